//! Learning-rate schedules as multipliers of each group's initial lr, following PyTorch's
//! `LambdaLR` protocol (the factor for step 0 applies at creation, each `step()` moves on one):
//! constant (with optional warm-up), linear warm-up then linear decay and cosine with warm-up
//! and a floor (transformers' `get_*_schedule_with_warmup`), and step decay (`StepLR`).

use std::f64::consts::PI;

use anyhow::{bail, Result};

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
