//! Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019: decoupled weight decay), with
//! AMSGrad, as `torch.optim.Adam` / `AdamW`: the single-tensor path (`_single_tensor_adam`,
//! operation for operation), the foreach path (`_multi_tensor_adam`, non-capturable) and the
//! fused kernels (`_fused_adam_` / `_fused_adamw_`).

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use tch::{Kind, Tensor};

use super::optimizer::Rule;
use super::param::{with_grads, ParamGroup, WithGrad};
use super::state::{ParamKey, ParamState};
use super::Kernel;
use crate::tensor::create::copy_of;
use crate::tensor::shim::{self, AdamLists, AdamSettings};

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

pub struct Moments {
    step: i64,
    /// The step count as the fused kernel reads it (float32, 0-dim, on the parameter's device).
    step_tensor: Option<Tensor>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

pub struct Adam {
    pub config: AdamConfig,
}

impl Adam {
    fn fresh(&self, kernel: Kernel, p: &Tensor) -> Result<Moments> {
        Ok(Moments {
            step: 0,
            step_tensor: self.step_tensor(kernel, p, 0)?,
            exp_avg: p.f_zeros_like()?,
            exp_avg_sq: p.f_zeros_like()?,
            max_exp_avg_sq: if self.config.amsgrad { Some(p.f_zeros_like()?) } else { None },
        })
    }

    fn step_tensor(&self, kernel: Kernel, p: &Tensor, step: i64) -> Result<Option<Tensor>> {
        Ok(if kernel == Kernel::Fused { Some(Tensor::f_full([], step as f64, (Kind::Float, p.device()))?) } else { None })
    }

    fn settings(&self, group: &ParamGroup) -> AdamSettings {
        let c = self.config;
        AdamSettings { lr: group.lr, beta1: c.beta1, beta2: c.beta2, weight_decay: group.weight_decay, eps: c.eps, amsgrad: c.amsgrad, decoupled: c.decoupled_weight_decay }
    }
}

/// `_single_tensor_adam` for one parameter, in place where torch is (one temporary each for
/// the scaled gradient, the denominator and the step).
fn single(p: &Tensor, grad: Tensor, m: &mut Moments, s: &AdamSettings) -> Result<()> {
    m.step += 1;
    let mut p = p.shallow_clone();
    let grad = if s.weight_decay != 0.0 && !s.decoupled { grad.f_add(&p.f_mul_scalar(s.weight_decay)?)? } else { grad };
    if s.weight_decay != 0.0 && s.decoupled {
        let _ = p.f_mul_scalar_(1.0 - s.lr * s.weight_decay)?;
    }
    let _ = m.exp_avg.f_lerp_(&grad, 1.0 - s.beta1)?;
    let _ = m.exp_avg_sq.f_mul_scalar_(s.beta2)?;
    let _ = m.exp_avg_sq.f_addcmul_(&grad.f_mul_scalar(1.0 - s.beta2)?, &grad)?;
    let step = m.step as f64;
    let step_size = s.lr / (1.0 - s.beta1.powf(step));
    let bias_correction2_sqrt = (1.0 - s.beta2.powf(step)).sqrt();
    if let Some(max) = &mut m.max_exp_avg_sq {
        let _ = max.f_maximum_out(&max.shallow_clone(), &m.exp_avg_sq)?;
    }
    let second = m.max_exp_avg_sq.as_ref().unwrap_or(&m.exp_avg_sq);
    let mut denom = second.f_sqrt()?;
    let _ = denom.f_div_scalar_(bias_correction2_sqrt)?;
    let _ = denom.f_add_scalar_(s.eps)?;
    // addcdiv_(exp_avg, denom, value=-step_size): p + (-step_size · exp_avg) / denom.
    let _ = p.f_addcdiv_(&m.exp_avg.f_mul_scalar(-step_size)?, &denom)?;
    Ok(())
}

/// `_multi_tensor_adam` (non-capturable) for one device and dtype.
fn foreach(list: &[WithGrad], moments: &mut [Moments], s: &AdamSettings) -> Result<()> {
    let params: Vec<Tensor> = list.iter().map(|w| w.param.tensor.shallow_clone()).collect();
    let mut grads: Vec<Tensor> = list.iter().map(|w| w.grad.shallow_clone()).collect();
    for m in moments.iter_mut() {
        m.step += 1;
    }
    if s.weight_decay != 0.0 {
        if s.decoupled {
            shim::mul_scalar_(&params, 1.0 - s.lr * s.weight_decay)?;
        } else {
            grads = shim::add_list(&grads, &params, s.weight_decay)?;
        }
    }
    let exp_avgs: Vec<Tensor> = moments.iter().map(|m| m.exp_avg.shallow_clone()).collect();
    let exp_avg_sqs: Vec<Tensor> = moments.iter().map(|m| m.exp_avg_sq.shallow_clone()).collect();
    shim::lerp_scalar_(&exp_avgs, &grads, 1.0 - s.beta1)?;
    shim::mul_scalar_(&exp_avg_sqs, s.beta2)?;
    shim::addcmul_scalar_(&exp_avg_sqs, &grads, &grads, 1.0 - s.beta2)?;
    drop(grads);
    let steps: Vec<f64> = moments.iter().map(|m| m.step as f64).collect();
    let step_sizes: Vec<f64> = steps.iter().map(|t| -(s.lr / (1.0 - s.beta1.powf(*t)))).collect();
    let bias_correction2_sqrt: Vec<f64> = steps.iter().map(|t| (1.0 - s.beta2.powf(*t)).sqrt()).collect();
    let denom = if s.amsgrad {
        let maxes: Vec<Tensor> = moments.iter().filter_map(|m| m.max_exp_avg_sq.as_ref().map(Tensor::shallow_clone)).collect();
        shim::maximum_(&maxes, &exp_avg_sqs)?;
        shim::sqrt(&maxes)?
    } else {
        shim::sqrt(&exp_avg_sqs)?
    };
    shim::div_scalars_(&denom, &bias_correction2_sqrt)?;
    shim::add_scalar_(&denom, s.eps)?;
    shim::addcdiv_scalars_(&params, &exp_avgs, &denom, &step_sizes)
}

/// `_fused_adam_` / `_fused_adamw_` for one device and dtype.
fn fused(list: Vec<WithGrad>, moments: &mut [Moments], s: &AdamSettings) -> Result<()> {
    let mut lists = AdamLists { params: Vec::new(), grads: Vec::new(), exp_avgs: Vec::new(), exp_avg_sqs: Vec::new(), max_exp_avg_sqs: Vec::new(), steps: Vec::new() };
    for (w, m) in list.iter().zip(moments.iter()) {
        lists.params.push(&w.param.tensor);
        lists.exp_avgs.push(&m.exp_avg);
        lists.exp_avg_sqs.push(&m.exp_avg_sq);
        if let Some(max) = &m.max_exp_avg_sq {
            lists.max_exp_avg_sqs.push(max);
        }
        if let Some(t) = &m.step_tensor {
            lists.steps.push(t);
        }
    }
    lists.grads = list.into_iter().map(|w| w.grad).collect();
    shim::fused_adam_(&lists, s)?;
    for m in moments.iter_mut() {
        m.step += 1;
    }
    Ok(())
}

impl Rule for Adam {
    type State = Moments;

    fn name(&self) -> &'static str {
        if self.config.decoupled_weight_decay {
            "adamw"
        } else {
            "adam"
        }
    }

    fn step(&self, kernel: Kernel, group: &ParamGroup, state: &mut HashMap<usize, Moments>) -> Result<()> {
        let s = self.settings(group);
        for list in with_grads(group)? {
            for w in &list {
                if !state.contains_key(&w.param.id) {
                    state.insert(w.param.id, self.fresh(kernel, &w.param.tensor)?);
                }
            }
            // The list's states are taken out for the update and put back after it.
            let ids: Vec<usize> = list.iter().map(|w| w.param.id).collect();
            let mut moments: Vec<Moments> = ids.iter().filter_map(|id| state.remove(id)).collect();
            let result = match kernel {
                Kernel::Single => list.into_iter().zip(moments.iter_mut()).try_for_each(|(w, m)| single(&w.param.tensor, w.grad, m, &s)),
                Kernel::Foreach => foreach(&list, &mut moments, &s),
                Kernel::Fused => fused(list, &mut moments, &s),
            };
            state.extend(ids.into_iter().zip(moments));
            result?;
        }
        Ok(())
    }

    fn export(&self, m: &Moments) -> Result<ParamState> {
        let mut tensors = BTreeMap::new();
        tensors.insert("exp_avg".to_string(), copy_of(&m.exp_avg)?);
        tensors.insert("exp_avg_sq".to_string(), copy_of(&m.exp_avg_sq)?);
        if let Some(max) = &m.max_exp_avg_sq {
            tensors.insert("max_exp_avg_sq".to_string(), copy_of(max)?);
        }
        Ok(ParamState { step: m.step, tensors })
    }

    fn import(&self, kernel: Kernel, key: &ParamKey, saved: &ParamState, p: &Tensor) -> Result<Moments> {
        Ok(Moments {
            step: saved.step,
            step_tensor: self.step_tensor(kernel, p, saved.step)?,
            exp_avg: saved.tensor(key, "exp_avg", p)?,
            exp_avg_sq: saved.tensor(key, "exp_avg_sq", p)?,
            max_exp_avg_sq: if self.config.amsgrad { Some(saved.tensor(key, "max_exp_avg_sq", p)?) } else { None },
        })
    }
}
