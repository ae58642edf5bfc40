//! Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019: decoupled weight decay), with
//! AMSGrad, as `torch.optim.Adam` / `AdamW` (`_single_tensor_adam`), operation for operation.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::Tensor;

use crate::tensor::create::copy_of;

use super::{all_params, for_each_grad, Optimizer, OptimizerState, ParamGroup, ParamState};

/// Adam's settings shared by all groups (lr and weight decay are per group).
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub amsgrad: bool,
    /// AdamW: decay the weights directly instead of adding `wd · p` to the gradient.
    pub decoupled_weight_decay: bool,
}

struct Moments {
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

pub struct Adam {
    groups: Vec<ParamGroup>,
    config: AdamConfig,
    moments: Vec<Option<Moments>>,
}

impl Adam {
    pub fn new(groups: Vec<ParamGroup>, config: AdamConfig) -> Adam {
        let count = all_params(&groups).count();
        Adam { groups, config, moments: (0..count).map(|_| None).collect() }
    }
}

fn update(p: &mut Tensor, grad: Tensor, m: &mut Moments, lr: f64, weight_decay: f64, c: &AdamConfig) -> Result<()> {
    m.step += 1;
    let grad = if weight_decay != 0.0 && !c.decoupled_weight_decay {
        grad.f_add(&p.f_mul_scalar(weight_decay)?)?
    } else {
        grad
    };
    if weight_decay != 0.0 && c.decoupled_weight_decay {
        let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
    }
    let _ = m.exp_avg.f_lerp_(&grad, 1.0 - c.beta1)?;
    let _ = m.exp_avg_sq.f_mul_scalar_(c.beta2)?;
    let _ = m.exp_avg_sq.f_add_(&grad.f_mul_scalar(1.0 - c.beta2)?.f_mul(&grad)?)?;
    let step = m.step as f64;
    let bias_correction1 = 1.0 - c.beta1.powf(step);
    let bias_correction2 = 1.0 - c.beta2.powf(step);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.sqrt();
    let second = match &mut m.max_exp_avg_sq {
        Some(max) => {
            let new_max = max.f_maximum(&m.exp_avg_sq)?;
            max.f_copy_(&new_max)?;
            max.shallow_clone()
        }
        None => m.exp_avg_sq.shallow_clone(),
    };
    let denom = second.f_sqrt()?.f_div_scalar(bias_correction2_sqrt)?.f_add_scalar(c.eps)?;
    // addcdiv_(exp_avg, denom, value=-step_size) computes p + (value · exp_avg) / denom.
    let _ = p.f_add_(&m.exp_avg.f_mul_scalar(-step_size)?.f_div(&denom)?)?;
    Ok(())
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let config = self.config;
        let moments = &mut self.moments;
        for_each_grad(&mut self.groups, |i, (lr, weight_decay), p, grad| {
            if moments[i].is_none() {
                moments[i] = Some(Moments {
                    step: 0,
                    exp_avg: p.f_zeros_like()?,
                    exp_avg_sq: p.f_zeros_like()?,
                    max_exp_avg_sq: if config.amsgrad { Some(p.f_zeros_like()?) } else { None },
                });
            }
            match moments[i].as_mut() {
                Some(m) => update(p, grad, m, lr, weight_decay, &config),
                None => Ok(()),
            }
        })
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        let mut params = BTreeMap::new();
        for (i, m) in self.moments.iter().enumerate() {
            let Some(m) = m else { continue };
            let mut tensors = BTreeMap::new();
            tensors.insert("exp_avg".to_string(), copy_of(&m.exp_avg)?);
            tensors.insert("exp_avg_sq".to_string(), copy_of(&m.exp_avg_sq)?);
            if let Some(max) = &m.max_exp_avg_sq {
                tensors.insert("max_exp_avg_sq".to_string(), copy_of(max)?);
            }
            params.insert(i, ParamState { step: m.step, tensors });
        }
        Ok(OptimizerState::new(params, &self.groups))
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        state.check_fits(&self.groups)?;
        let mut moments = Vec::new();
        for (i, p) in all_params(&self.groups).enumerate() {
            let (Some(exp_avg), Some(exp_avg_sq)) = (state.tensor(i, "exp_avg", p)?, state.tensor(i, "exp_avg_sq", p)?) else {
                moments.push(None);
                continue;
            };
            let max_exp_avg_sq = if self.config.amsgrad { state.tensor(i, "max_exp_avg_sq", p)? } else { None };
            if self.config.amsgrad && max_exp_avg_sq.is_none() {
                anyhow::bail!("state of parameter {} lacks 'max_exp_avg_sq', which amsgrad needs", i + 1);
            }
            moments.push(Some(Moments { step: state.params[&i].step, exp_avg, exp_avg_sq, max_exp_avg_sq }));
        }
        self.moments = moments;
        state.apply_groups(&mut self.groups);
        Ok(())
    }
}
