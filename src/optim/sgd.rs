//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
//! as `torch.optim.SGD`: the single-tensor path (`_single_tensor_sgd`), the foreach path
//! (`_multi_tensor_sgd`) and the fused kernel (`_fused_sgd_`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use tch::Tensor;

use super::optimizer::Rule;
use super::param::{with_grads, ParamGroup, WithGrad};
use super::state::{ParamKey, ParamState};
use super::Kernel;
use crate::tensor::create::copy_of;
use crate::tensor::shim::{self, SgdSettings};

/// SGD's settings shared by all groups (lr and weight decay are per group).
#[derive(Clone, Copy, Debug, Default)]
pub struct SgdConfig {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
}

pub struct Sgd {
    pub config: SgdConfig,
}

impl Sgd {
    pub fn new(config: SgdConfig) -> Result<Sgd> {
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            bail!("Nesterov momentum requires a momentum and zero dampening");
        }
        Ok(Sgd { config })
    }

    fn settings(&self, group: &ParamGroup) -> SgdSettings {
        let c = self.config;
        SgdSettings { lr: group.lr, weight_decay: group.weight_decay, momentum: c.momentum, dampening: c.dampening, nesterov: c.nesterov }
    }
}

/// `_single_tensor_sgd` for one parameter; `buf` is its momentum buffer (made on first use).
fn single(p: &Tensor, grad: Tensor, buf: &mut Option<Tensor>, s: &SgdSettings) -> Result<()> {
    let mut d_p = if s.weight_decay != 0.0 { grad.f_add(&p.f_mul_scalar(s.weight_decay)?)? } else { grad };
    if s.momentum != 0.0 {
        let b = match buf.take() {
            None => copy_of(&d_p)?,
            Some(mut b) => {
                let _ = b.f_mul_scalar_(s.momentum)?;
                let _ = b.f_add_(&d_p.f_mul_scalar(1.0 - s.dampening)?)?;
                b
            }
        };
        d_p = if s.nesterov { d_p.f_add(&b.f_mul_scalar(s.momentum)?)? } else { b.shallow_clone() };
        *buf = Some(b);
    }
    let _ = p.shallow_clone().f_add_(&d_p.f_mul_scalar(-s.lr)?)?;
    Ok(())
}

/// `_multi_tensor_sgd` for one device and dtype (without touching the gradients themselves).
fn foreach(list: &[WithGrad], bufs: &mut [Option<Tensor>], s: &SgdSettings) -> Result<()> {
    let params: Vec<Tensor> = list.iter().map(|w| w.param.tensor.shallow_clone()).collect();
    let grads: Vec<Tensor> = list.iter().map(|w| w.grad.shallow_clone()).collect();
    let mut d_p = if s.weight_decay != 0.0 { shim::add_list(&grads, &params, s.weight_decay)? } else { grads };
    if s.momentum != 0.0 {
        if bufs.iter().all(Option::is_some) {
            let b: Vec<Tensor> = bufs.iter().flatten().map(Tensor::shallow_clone).collect();
            shim::mul_scalar_(&b, s.momentum)?;
            shim::add_list_(&b, &d_p, 1.0 - s.dampening)?;
        } else {
            for (buf, g) in bufs.iter_mut().zip(&d_p) {
                match buf {
                    None => *buf = Some(copy_of(&g.f_detach()?)?),
                    Some(b) => {
                        let _ = b.f_mul_scalar_(s.momentum)?;
                        let _ = b.f_add_(&g.f_mul_scalar(1.0 - s.dampening)?)?;
                    }
                }
            }
        }
        let b: Vec<Tensor> = bufs.iter().flatten().map(Tensor::shallow_clone).collect();
        d_p = if s.nesterov { shim::add_list(&d_p, &b, s.momentum)? } else { b };
    }
    shim::add_list_(&params, &d_p, -s.lr)
}

/// `_fused_sgd_` for one device and dtype: parameters with a momentum buffer in one call,
/// those without (their first step, the kernel fills new buffers) in another.
fn fused(list: &[WithGrad], bufs: &mut [Option<Tensor>], s: &SgdSettings) -> Result<()> {
    if s.momentum == 0.0 {
        let params: Vec<&Tensor> = list.iter().map(|w| &w.param.tensor).collect();
        let grads: Vec<Tensor> = list.iter().map(|w| w.grad.shallow_clone()).collect();
        return shim::fused_sgd_(&params, &grads, &[], s, false);
    }
    for first in [false, true] {
        let mut params = Vec::new();
        let mut grads = Vec::new();
        let mut picked = Vec::new();
        for (w, buf) in list.iter().zip(bufs.iter_mut()) {
            if buf.is_none() == first {
                if first {
                    *buf = Some(w.param.tensor.f_empty_like()?);
                }
                params.push(&w.param.tensor);
                grads.push(w.grad.shallow_clone());
                picked.push(buf.as_ref().map(Tensor::shallow_clone));
            }
        }
        if params.is_empty() {
            continue;
        }
        let buffers: Vec<Tensor> = picked.into_iter().flatten().collect();
        shim::fused_sgd_(&params, &grads, &buffers.iter().collect::<Vec<_>>(), s, first)?;
    }
    Ok(())
}

impl Rule for Sgd {
    /// The momentum buffer (None until the first step, and always without momentum).
    type State = Option<Tensor>;

    fn name(&self) -> &'static str {
        "sgd"
    }

    fn step(&self, kernel: Kernel, group: &ParamGroup, state: &mut HashMap<usize, Option<Tensor>>) -> Result<()> {
        let s = self.settings(group);
        for list in with_grads(group)? {
            // The list's buffers are taken out for the update and put back after it.
            let ids: Vec<usize> = list.iter().map(|w| w.param.id).collect();
            let mut bufs: Vec<Option<Tensor>> = ids.iter().map(|id| state.remove(id).flatten()).collect();
            let result = match kernel {
                Kernel::Single => list.into_iter().zip(bufs.iter_mut()).try_for_each(|(w, b)| single(&w.param.tensor, w.grad, b, &s)),
                Kernel::Foreach => foreach(&list, &mut bufs, &s),
                Kernel::Fused => fused(&list, &mut bufs, &s),
            };
            state.extend(ids.into_iter().zip(bufs).filter(|(_, b)| b.is_some()));
            result?;
        }
        Ok(())
    }

    fn export(&self, buf: &Option<Tensor>) -> Result<ParamState> {
        let mut tensors = BTreeMap::new();
        if let Some(b) = buf {
            tensors.insert("momentum_buffer".to_string(), copy_of(b)?);
        }
        Ok(ParamState { step: 0, tensors })
    }

    fn import(&self, _kernel: Kernel, key: &ParamKey, saved: &ParamState, p: &Tensor) -> Result<Option<Tensor>> {
        if self.config.momentum == 0.0 {
            return Ok(None);
        }
        Ok(Some(saved.tensor(key, "momentum_buffer", p)?))
    }
}
