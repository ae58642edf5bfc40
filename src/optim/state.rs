//! An optimizer's state as data: what `state_dict` returns and checkpoints store. Like
//! PyTorch's (`state` per parameter, `param_groups` settings), except that a parameter is keyed
//! by its name when it has one, so that a state loads into an optimizer whose parameters come
//! in another order or that has gained parameters since; unnamed ones are keyed by position.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use tch::Tensor;

use super::param::ParamGroup;
use crate::tensor::create::copy_of;

/// How a state names a parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKey {
    Name(String),
    /// Position over all groups in order, 0-based (1-based in Lua and messages).
    Index(usize),
}

impl std::fmt::Display for ParamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamKey::Name(n) => write!(f, "'{n}'"),
            ParamKey::Index(i) => write!(f, "parameter {}", i + 1),
        }
    }
}

/// The state of one parameter: its step count and named tensors (`exp_avg`, `momentum_buffer`…).
pub struct ParamState {
    pub step: i64,
    pub tensors: BTreeMap<String, Tensor>,
}

impl ParamState {
    /// The named tensor, copied onto `param`'s device and checked against its shape.
    pub fn tensor(&self, key: &ParamKey, name: &str, param: &Tensor) -> Result<Tensor> {
        let Some(t) = self.tensors.get(name) else { bail!("the state of {key} lacks '{name}'") };
        if t.size() != param.size() {
            bail!("state '{name}' of {key} has shape {:?}, the parameter {:?}", t.size(), param.size());
        }
        // Onto the parameter's device and dtype, as torch.optim casts loaded state.
        copy_of(&t.f_to_dtype_layout((param.f_kind()?, param.device()), false, false)?.f_detach()?)
    }
}

/// A group's settings and which parameters it holds.
pub struct GroupState {
    pub lr: f64,
    pub weight_decay: f64,
    pub params: Vec<ParamKey>,
}

pub struct OptimizerState {
    /// Parameters not yet updated have no entry.
    pub params: BTreeMap<ParamKey, ParamState>,
    pub groups: Vec<GroupState>,
}

/// The key of each parameter of `groups`, with its id.
pub fn keys(groups: &[ParamGroup]) -> Vec<(ParamKey, usize)> {
    groups
        .iter()
        .flat_map(|g| &g.params)
        .enumerate()
        .map(|(i, p)| (p.name.clone().map(ParamKey::Name).unwrap_or(ParamKey::Index(i)), p.id))
        .collect()
}

impl OptimizerState {
    /// Matches the saved entries to `groups`' parameters: by name, or by position for unnamed
    /// ones. Returns (parameter id, key, saved state). Saved entries that match no parameter,
    /// or a different number of groups, are errors.
    pub fn match_params<'a>(&'a self, groups: &[ParamGroup]) -> Result<Vec<(usize, &'a ParamKey, &'a ParamState)>> {
        if self.groups.len() != groups.len() {
            bail!("the state has {} parameter groups, the optimizer {}", self.groups.len(), groups.len());
        }
        let ours: HashMap<ParamKey, usize> = keys(groups).into_iter().collect();
        let unknown: Vec<String> = self.params.keys().filter(|k| !ours.contains_key(*k)).map(|k| k.to_string()).collect();
        if !unknown.is_empty() {
            bail!("the state holds {} that this optimizer does not: {}", if unknown.len() == 1 { "a parameter" } else { "parameters" }, unknown.join(", "));
        }
        Ok(self.params.iter().map(|(k, s)| (ours[k], k, s)).collect())
    }

    /// Sets each group's lr and weight decay to the saved ones.
    pub fn apply_settings(&self, groups: &mut [ParamGroup]) {
        for (group, saved) in groups.iter_mut().zip(&self.groups) {
            group.lr = saved.lr;
            group.weight_decay = saved.weight_decay;
        }
    }
}
