//! An optimizer's state as data: what `state_dict` returns and checkpoints store, laid out like
//! PyTorch's (`state` per parameter index, `param_groups` settings).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::Tensor;

use super::ParamGroup;
use crate::tensor::create::copy_of;

/// The state of one parameter: its step count and named tensors (`exp_avg`, `momentum_buffer`…).
pub struct ParamState {
    pub step: i64,
    pub tensors: BTreeMap<String, Tensor>,
}

/// All of an optimizer's state.
pub struct OptimizerState {
    /// By parameter index (0-based here, 1-based in Lua and in messages) over all groups in
    /// order; parameters not yet updated are absent.
    pub params: BTreeMap<usize, ParamState>,
    /// (lr, weight_decay) of each group.
    pub groups: Vec<(f64, f64)>,
}

impl OptimizerState {
    pub fn new(params: BTreeMap<usize, ParamState>, groups: &[ParamGroup]) -> OptimizerState {
        OptimizerState { params, groups: groups.iter().map(|g| (g.lr, g.weight_decay)).collect() }
    }

    pub fn check_fits(&self, groups: &[ParamGroup]) -> Result<()> {
        if self.groups.len() != groups.len() {
            bail!("state has {} parameter groups, the optimizer has {}", self.groups.len(), groups.len());
        }
        let count: usize = groups.iter().map(|g| g.params.len()).sum();
        if let Some((&index, _)) = self.params.iter().next_back() {
            if index >= count {
                bail!("state has an entry for parameter {}, the optimizer has {count}", index + 1);
            }
        }
        Ok(())
    }

    pub fn apply_groups(&self, groups: &mut [ParamGroup]) {
        for (group, (lr, wd)) in groups.iter_mut().zip(&self.groups) {
            group.lr = *lr;
            group.weight_decay = *wd;
        }
    }

    /// The named tensor of a parameter's state, checked against the parameter's shape.
    pub fn tensor(&self, index: usize, name: &str, param: &Tensor) -> Result<Option<Tensor>> {
        let Some(state) = self.params.get(&index) else { return Ok(None) };
        let Some(t) = state.tensors.get(name) else {
            bail!("state of parameter {} lacks '{name}'", index + 1);
        };
        if t.size() != param.size() {
            bail!("state '{name}' of parameter {} has shape {:?}, the parameter {:?}", index + 1, t.size(), param.size());
        }
        Ok(Some(copy_of(&t.f_to_device(param.device())?.f_detach()?)?))
    }
}
