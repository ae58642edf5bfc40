//! One optimizer over any update rule: groups of parameters, state per parameter kept by
//! identity (so groups may gain parameters between steps, `add_param_group`), state dicts by
//! name, and zeroing every gradient at once.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use tch::Tensor;

use super::param::{build_groups, GroupSpec, ParamGroup};
use super::state::{keys, GroupState, OptimizerState, ParamState};
use super::Kernel;
use crate::tensor::shim;

/// An update rule: Adam, SGD, ….
pub trait Rule {
    /// Per-parameter state (moments, momentum buffers, step counts).
    type State;
    fn name(&self) -> &'static str;
    /// Updates the parameters of `group` that have gradients.
    fn step(&self, kernel: Kernel, group: &ParamGroup, state: &mut HashMap<usize, Self::State>) -> Result<()>;
    fn export(&self, state: &Self::State) -> Result<ParamState>;
    /// The state of `param` from a saved one (copied, checked against the parameter), for
    /// updates by `kernel`.
    fn import(&self, kernel: Kernel, key: &super::ParamKey, saved: &ParamState, param: &Tensor) -> Result<Self::State>;
}

/// What every optimizer offers the runtime and the bindings.
pub trait Optimizer {
    fn name(&self) -> &'static str;
    fn kernel(&self) -> Kernel;
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    fn groups(&self) -> &[ParamGroup];
    fn groups_mut(&mut self) -> &mut [ParamGroup];
    /// Adds groups of parameters (checked against those already held).
    fn add_param_groups(&mut self, specs: Vec<GroupSpec>, lr: f64, weight_decay: f64) -> Result<()>;
    fn state_dict(&self) -> Result<OptimizerState>;
    /// Loads a state, matching parameters by name (by position if unnamed); nothing changes
    /// if it does not fit.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;
    /// Unsets every gradient (`set_to_none`, PyTorch's default) or zeroes them all in one
    /// foreach call.
    fn zero_grad(&mut self, set_to_none: bool) -> Result<()> {
        let params: Vec<Tensor> = self.groups().iter().flat_map(|g| &g.params).map(|p| p.tensor.shallow_clone()).collect();
        zero_grads(&params, set_to_none)
    }
}

/// Unsets the gradients of `params` (`set_to_none`) or zeroes them in one foreach call.
pub fn zero_grads(params: &[Tensor], set_to_none: bool) -> Result<()> {
    let mut grads = Vec::new();
    for p in params {
        if set_to_none {
            shim::set_grad(p, None)?;
        } else {
            let g = p.f_grad()?;
            if g.defined() {
                grads.push(g);
            }
        }
    }
    if !grads.is_empty() {
        shim::zero_(&grads)?;
    }
    Ok(())
}

pub struct Optim<R: Rule> {
    rule: R,
    kernel: Kernel,
    groups: Vec<ParamGroup>,
    state: HashMap<usize, R::State>,
}

impl<R: Rule> Optim<R> {
    pub fn new(rule: R, kernel: Kernel, specs: Vec<GroupSpec>, lr: f64, weight_decay: f64) -> Result<Optim<R>> {
        Ok(Optim { rule, kernel, groups: build_groups(specs, lr, weight_decay, &[])?, state: HashMap::new() })
    }
}

impl<R: Rule> Optimizer for Optim<R> {
    fn name(&self) -> &'static str {
        self.rule.name()
    }

    fn kernel(&self) -> Kernel {
        self.kernel
    }

    fn step(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        crate::tensor::guard::catch(|| {
            for group in &self.groups {
                self.rule.step(self.kernel, group, &mut self.state)?;
            }
            Ok(())
        })
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    fn add_param_groups(&mut self, specs: Vec<GroupSpec>, lr: f64, weight_decay: f64) -> Result<()> {
        let added = build_groups(specs, lr, weight_decay, &self.groups)?;
        self.groups.extend(added);
        Ok(())
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        let mut params = BTreeMap::new();
        for (key, id) in keys(&self.groups) {
            if let Some(s) = self.state.get(&id) {
                params.insert(key, self.rule.export(s)?);
            }
        }
        let mut position = 0;
        let mut groups = Vec::new();
        let all = keys(&self.groups);
        for g in &self.groups {
            let params = all[position..position + g.params.len()].iter().map(|(k, _)| k.clone()).collect();
            position += g.params.len();
            groups.push(GroupState { lr: g.lr, weight_decay: g.weight_decay, params });
        }
        Ok(OptimizerState { params, groups })
    }

    fn load_state_dict(&mut self, saved: &OptimizerState) -> Result<()> {
        let matched = saved.match_params(&self.groups)?;
        let tensors: HashMap<usize, &Tensor> = self.groups.iter().flat_map(|g| &g.params).map(|p| (p.id, &p.tensor)).collect();
        let mut state = HashMap::new();
        for (id, key, s) in matched {
            state.insert(id, self.rule.import(self.kernel, key, s, tensors[&id]).with_context(|| format!("loading the state of {key}"))?);
        }
        saved.apply_settings(&mut self.groups);
        self.state = state;
        Ok(())
    }
}
