//! Learning-rate schedules as multipliers of each group's initial lr, following PyTorch's
//! `LambdaLR` protocol (the factor for step 0 applies at creation, each `step()` moves on one):
//! constant (with optional warm-up), linear warm-up then linear decay and cosine with warm-up
//! and a floor (transformers' `get_*_schedule_with_warmup`), and step decay (`StepLR`). A
//! `Scheduler` is the state machine that drives an optimizer's groups by one of them.

use std::f64::consts::PI;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::Optimizer;

#[derive(Clone, Debug)]
pub enum Schedule {
    /// 1 after `warmup` steps of linear warm-up (`get_constant_schedule_with_warmup`).
    Constant { warmup: i64 },
    /// Warm-up to 1, then linear decay to 0 at `total` (`get_linear_schedule_with_warmup`).
    Linear { warmup: i64, total: i64 },
    /// Warm-up to 1, then half a cosine down to `min_lr_rate`
    /// (`get_cosine_with_min_lr_schedule_with_warmup`, `num_cycles = 0.5`).
    Cosine { warmup: i64, total: i64, min_lr_rate: f64 },
    /// `gamma ^ floor(step / step_size)` (`StepLR`).
    Step { step_size: i64, gamma: f64 },
}

fn warmup_factor(step: i64, warmup: i64) -> Option<f64> {
    (step < warmup).then(|| step as f64 / warmup.max(1) as f64)
}

impl Schedule {
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant { warmup } if warmup < 0 => bail!("warmup must be ≥ 0, got {warmup}"),
            Schedule::Linear { warmup, total } | Schedule::Cosine { warmup, total, .. } if warmup < 0 || total <= 0 => {
                bail!("need warmup ≥ 0 and total > 0, got warmup {warmup}, total {total}")
            }
            Schedule::Cosine { min_lr_rate, .. } if !(0.0..=1.0).contains(&min_lr_rate) => {
                bail!("min_lr_rate must be in [0, 1], got {min_lr_rate}")
            }
            Schedule::Step { step_size, .. } if step_size <= 0 => bail!("step_size must be > 0, got {step_size}"),
            _ => Ok(()),
        }
    }

    /// The lr multiplier at `step` (0 = before any optimizer step).
    pub fn factor(&self, step: i64) -> f64 {
        match *self {
            Schedule::Constant { warmup } => warmup_factor(step, warmup).unwrap_or(1.0),
            Schedule::Linear { warmup, total } => warmup_factor(step, warmup)
                .unwrap_or_else(|| (0.0f64).max((total - step) as f64 / (total - warmup).max(1) as f64)),
            Schedule::Cosine { warmup, total, min_lr_rate } => warmup_factor(step, warmup).unwrap_or_else(|| {
                let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
                let cosine = 0.5 * (1.0 + (PI * 0.5 * 2.0 * progress).cos());
                (cosine * (1.0 - min_lr_rate) + min_lr_rate).max(0.0)
            }),
            Schedule::Step { step_size, gamma } => gamma.powi((step / step_size) as i32),
        }
    }
}

/// A schedule's settings as a caller gives them; unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScheduleOptions {
    /// Steps of linear warm-up from 0 (default 0).
    pub warmup: Option<i64>,
    /// Total optimizer steps (linear, cosine).
    pub total: Option<i64>,
    /// Floor of the cosine as a fraction of the initial lr (default 0).
    pub min_lr_rate: Option<f64>,
    /// Steps between decays (step).
    pub step_size: Option<i64>,
    /// Decay factor (step; default 0.1).
    pub gamma: Option<f64>,
}

impl Schedule {
    /// The schedule called `name` ("constant", "linear", "cosine", "step") with `o`'s settings.
    pub fn from_options(name: &str, o: &ScheduleOptions) -> Result<Schedule> {
        let need = |v: Option<i64>, key: &str| -> Result<i64> {
            match v {
                Some(v) => Ok(v),
                None => bail!("needs '{key}'"),
            }
        };
        let accepted: &[&str] = match name {
            "constant" => &["warmup"],
            "linear" => &["warmup", "total"],
            "cosine" => &["warmup", "total", "min_lr_rate"],
            _ => &["step_size", "gamma"],
        };
        let given = [
            ("warmup", o.warmup.is_some()),
            ("total", o.total.is_some()),
            ("min_lr_rate", o.min_lr_rate.is_some()),
            ("step_size", o.step_size.is_some()),
            ("gamma", o.gamma.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !accepted.contains(key)) {
            bail!("the {name} schedule has no option '{key}' (accepted: {})", accepted.join(", "));
        }
        let schedule = match name {
            "constant" => Schedule::Constant { warmup: o.warmup.unwrap_or(0) },
            "linear" => Schedule::Linear { warmup: o.warmup.unwrap_or(0), total: need(o.total, "total")? },
            "cosine" => Schedule::Cosine { warmup: o.warmup.unwrap_or(0), total: need(o.total, "total")?, min_lr_rate: o.min_lr_rate.unwrap_or(0.0) },
            "step" => Schedule::Step { step_size: need(o.step_size, "step_size")?, gamma: o.gamma.unwrap_or(0.1) },
            other => bail!("unknown schedule '{other}' (expected constant, linear, cosine or step)"),
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

/// Drives an optimizer's learning rates: each scheduled group's lr is its `initial_lr` times the
/// schedule's factor at `last_step`. The groups the optimizer has when the scheduler is made are
/// scheduled; groups added later keep their own lr.
pub struct Scheduler {
    pub schedule: Schedule,
    pub last_step: i64,
}

impl Scheduler {
    /// Takes each group's current lr as its `initial_lr` (unless a schedule set one before) and
    /// applies step 0.
    pub fn new(schedule: Schedule, opt: &mut dyn Optimizer) -> Scheduler {
        for group in opt.groups_mut() {
            group.initial_lr.get_or_insert(group.lr);
        }
        let s = Scheduler { schedule, last_step: 0 };
        s.apply(opt);
        s
    }

    /// Sets every scheduled group's lr for `last_step`.
    pub fn apply(&self, opt: &mut dyn Optimizer) {
        let factor = self.schedule.factor(self.last_step);
        for group in opt.groups_mut() {
            if let Some(base) = group.initial_lr {
                group.lr = base * factor;
            }
        }
    }

    /// Moves on one step.
    pub fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_step += 1;
        self.apply(opt);
    }

    /// The lrs the schedule scales, one per scheduled group.
    pub fn base_lrs(&self, opt: &dyn Optimizer) -> Vec<f64> {
        opt.groups().iter().filter_map(|g| g.initial_lr).collect()
    }

    /// Multiplies every scheduled group's base lr (and so its current lr) by `f`.
    pub fn scale(&self, f: f64, opt: &mut dyn Optimizer) -> Result<()> {
        if !(f >= 0.0 && f.is_finite()) {
            bail!("the factor must be a finite number ≥ 0, got {f}");
        }
        for group in opt.groups_mut() {
            if let Some(base) = group.initial_lr {
                group.set_lr(base * f);
            }
        }
        Ok(())
    }

    /// Restores a saved position and base lrs (one per scheduled group).
    pub fn load(&mut self, last_step: i64, base_lrs: Vec<f64>, opt: &mut dyn Optimizer) -> Result<()> {
        let scheduled: Vec<usize> = opt.groups().iter().enumerate().filter(|(_, g)| g.initial_lr.is_some()).map(|(i, _)| i).collect();
        if base_lrs.len() != scheduled.len() {
            bail!("the state has {} groups, the schedule {}", base_lrs.len(), scheduled.len());
        }
        for (i, base) in scheduled.into_iter().zip(base_lrs) {
            opt.groups_mut()[i].initial_lr = Some(base);
        }
        self.last_step = last_step;
        self.apply(opt);
        Ok(())
    }
}
