//! What optimizers update: parameters with the identity that keys their state (the TensorImpl
//! every shallow copy shares) and the name a parameter was listed under, in groups that share a
//! learning rate and weight decay. Groups are checked here: no empty list, floating-point
//! tensors only, no parameter twice, no two parameters under one name.

use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::tensor::dtype::is_floating;
use crate::tensor::dtype_name;
use crate::tensor::shim::identity;

pub struct Param {
    pub tensor: Tensor,
    /// The name in the module tree it came from, if it was listed with one.
    pub name: Option<String>,
    /// The parameter's identity (its TensorImpl).
    pub id: usize,
}

impl Param {
    pub fn new(tensor: Tensor, name: Option<String>) -> Result<Param> {
        if !is_floating(tensor.kind()) {
            bail!(
                "can only optimize floating-point tensors, got {}{} (a weight kept quantised is frozen: give the optimizer model:parameters{{ trainable = true }})",
                dtype_name(tensor.kind()),
                name.as_deref().map(|n| format!(" ('{n}')")).unwrap_or_default()
            );
        }
        let id = identity(&tensor)?.tensor;
        Ok(Param { tensor, name, id })
    }

    /// How messages name it: its name, or its position (1-based, over all groups).
    pub fn describe(&self, position: usize) -> String {
        match &self.name {
            Some(n) => format!("'{n}'"),
            None => format!("parameter {}", position + 1),
        }
    }
}

pub struct ParamGroup {
    pub params: Vec<Param>,
    pub lr: f64,
    pub weight_decay: f64,
    /// The lr a schedule scales (PyTorch's `initial_lr`), once a schedule drives this group.
    pub initial_lr: Option<f64>,
}

impl ParamGroup {
    /// Sets the learning rate. Under a schedule this sets the lr the schedule scales, and the
    /// current lr moves with it (the schedule's factor is kept), so that the next steps use it
    /// rather than the schedule overwriting it.
    pub fn set_lr(&mut self, lr: f64) {
        match self.initial_lr {
            Some(base) => {
                let factor = if base > 0.0 { self.lr / base } else { 1.0 };
                self.initial_lr = Some(lr);
                self.lr = lr * factor;
            }
            None => self.lr = lr,
        }
    }
}

/// A group as a caller gives it: tensors (with names if known) and the settings it overrides.
pub struct GroupSpec {
    pub params: Vec<(Tensor, Option<String>)>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
}

fn check_setting(name: &str, v: f64) -> Result<()> {
    if v < 0.0 || !v.is_finite() {
        bail!("{name} must be a finite number ≥ 0, got {v}");
    }
    Ok(())
}

/// Builds checked groups from specs, with `lr` and `weight_decay` as defaults; `existing` are
/// groups the optimizer already has (for `add_param_group`).
pub fn build_groups(specs: Vec<GroupSpec>, lr: f64, weight_decay: f64, existing: &[ParamGroup]) -> Result<Vec<ParamGroup>> {
    let mut seen_ids: HashMap<usize, String> = HashMap::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut position = 0;
    for p in existing.iter().flat_map(|g| &g.params) {
        seen_ids.insert(p.id, p.describe(position));
        if let Some(n) = &p.name {
            seen_names.insert(n.clone(), p.id);
        }
        position += 1;
    }
    let mut groups = Vec::new();
    for spec in specs {
        let (lr, weight_decay) = (spec.lr.unwrap_or(lr), spec.weight_decay.unwrap_or(weight_decay));
        check_setting("lr", lr)?;
        check_setting("weight_decay", weight_decay)?;
        let mut params = Vec::new();
        for (tensor, name) in spec.params {
            let p = Param::new(tensor, name)?;
            if let Some(before) = seen_ids.get(&p.id) {
                bail!("{} is given twice (also as {before}); each parameter may appear in one group only", p.describe(position));
            }
            if let Some(n) = &p.name {
                if seen_names.get(n).is_some_and(|id| *id != p.id) {
                    bail!("two different parameters are named '{n}'; optimizer state is kept by name, so names must be unique (pass the whole model's parameters, or a table of your own names)");
                }
                seen_names.insert(n.clone(), p.id);
            }
            seen_ids.insert(p.id, p.describe(position));
            params.push(p);
            position += 1;
        }
        groups.push(ParamGroup { params, lr, weight_decay, initial_lr: None });
    }
    if groups.iter().all(|g| g.params.is_empty()) {
        bail!("got an empty parameter list");
    }
    Ok(groups)
}

/// A parameter with its gradient, as an update sees it.
pub struct WithGrad<'a> {
    pub param: &'a Param,
    pub grad: Tensor,
}

/// The parameters of `group` that have a gradient, split by (device, dtype) so that each list
/// can go to one foreach or fused kernel.
pub fn with_grads(group: &ParamGroup) -> Result<Vec<Vec<WithGrad<'_>>>> {
    let mut buckets: Vec<((Device, Kind), Vec<WithGrad<'_>>)> = Vec::new();
    for p in &group.params {
        let grad = p.tensor.f_grad()?;
        if !grad.defined() {
            continue;
        }
        let key = (p.tensor.device(), p.tensor.kind());
        match buckets.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(WithGrad { param: p, grad }),
            None => buckets.push((key, vec![WithGrad { param: p, grad }])),
        }
    }
    Ok(buckets.into_iter().map(|(_, list)| list).collect())
}
