//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay,
//! as `torch.optim.SGD` (`_single_tensor_sgd`).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::Tensor;

use crate::tensor::create::copy_of;

use super::{all_params, for_each_grad, Optimizer, OptimizerState, ParamGroup, ParamState};

/// SGD's settings shared by all groups (lr and weight decay are per group).
#[derive(Clone, Copy, Debug, Default)]
pub struct SgdConfig {
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
}

pub struct Sgd {
    groups: Vec<ParamGroup>,
    config: SgdConfig,
    /// Momentum buffer per parameter (over all groups in order), made on first use.
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(groups: Vec<ParamGroup>, config: SgdConfig) -> Result<Sgd> {
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            bail!("Nesterov momentum requires a momentum and zero dampening");
        }
        let count = all_params(&groups).count();
        Ok(Sgd { groups, config, buffers: (0..count).map(|_| None).collect() })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let SgdConfig { momentum, dampening, nesterov } = self.config;
        let buffers = &mut self.buffers;
        for_each_grad(&mut self.groups, |i, (lr, weight_decay), p, grad| {
            let mut d_p = if weight_decay != 0.0 { grad.f_add(&p.f_mul_scalar(weight_decay)?)? } else { grad };
            if momentum != 0.0 {
                let buf = match buffers[i].take() {
                    None => copy_of(&d_p)?,
                    Some(mut buf) => {
                        let _ = buf.f_mul_scalar_(momentum)?;
                        let _ = buf.f_add_(&d_p.f_mul_scalar(1.0 - dampening)?)?;
                        buf
                    }
                };
                d_p = if nesterov { d_p.f_add(&buf.f_mul_scalar(momentum)?)? } else { buf.shallow_clone() };
                buffers[i] = Some(buf);
            }
            let _ = p.f_add_(&d_p.f_mul_scalar(-lr)?)?;
            Ok(())
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
        for (i, buf) in self.buffers.iter().enumerate() {
            if let Some(buf) = buf {
                let tensors = BTreeMap::from([("momentum_buffer".to_string(), copy_of(&buf)?)]);
                params.insert(i, ParamState { step: 0, tensors });
            }
        }
        Ok(OptimizerState::new(params, &self.groups))
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        state.check_fits(&self.groups)?;
        let mut buffers = Vec::new();
        for (i, p) in all_params(&self.groups).enumerate() {
            buffers.push(state.tensor(i, "momentum_buffer", p)?);
        }
        self.buffers = buffers;
        state.apply_groups(&mut self.groups);
        Ok(())
    }
}
