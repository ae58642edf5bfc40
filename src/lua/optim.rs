//! `mt.optim`: optimizers as userdata (`sgd`, `adam`, `adamw`) over the Rust core, parameter
//! groups, state dicts as Lua tables, and `clip_grad_norm`.

use std::collections::BTreeMap;

use mlua::{Lua, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;
use tch::Tensor;

use super::args::{describe, misuse, options, OrMisuse};
use super::tensor::{tensor_arg, wrap};
use crate::optim::adam::{Adam, AdamConfig};
use crate::optim::clip::clip_grad_norm;
use crate::optim::sgd::{Sgd, SgdConfig};
use crate::optim::{Optimizer, OptimizerState, ParamGroup, ParamState};
use crate::tensor::dtype::is_floating;

/// An optimizer owned by Lua.
pub struct LuaOptimizer {
    pub inner: Box<dyn Optimizer>,
    kind: &'static str,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupOptions {
    lr: Option<f64>,
    weight_decay: Option<f64>,
}

/// Reads `params`: a sequence of tensors, or a sequence of groups
/// `{ params = {...}, lr = ?, weight_decay = ? }` whose settings override the defaults.
fn param_groups(lua: &Lua, call: &str, params: &Table, lr: f64, weight_decay: f64) -> mlua::Result<Vec<ParamGroup>> {
    let first: Value = params.raw_get(1)?;
    let tensors = |list: &Table| -> mlua::Result<Vec<Tensor>> {
        let mut out = Vec::new();
        for v in list.sequence_values::<Value>() {
            let t = tensor_arg(call, &v?)?;
            if !is_floating(t.kind()) {
                return Err(misuse(call, format!("can only optimize floating-point tensors, got {}", crate::tensor::dtype_name(t.kind()))));
            }
            out.push(t);
        }
        Ok(out)
    };
    let groups = match first {
        Value::Nil => return Err(misuse(call, "got an empty parameter list")),
        Value::Table(_) => {
            let mut groups = Vec::new();
            for g in params.sequence_values::<Table>() {
                let g = g.map_err(|e| misuse(call, format!("a parameter group must be a table: {e}")))?;
                let list: Table = g.raw_get("params").map_err(|_| misuse(call, "a parameter group needs a 'params' sequence"))?;
                let settings = g.clone();
                settings.raw_set("params", Value::Nil)?;
                let o: GroupOptions = options(lua, call, Some(settings))?;
                g.raw_set("params", list.clone())?;
                groups.push(ParamGroup { params: tensors(&list)?, lr: o.lr.unwrap_or(lr), weight_decay: o.weight_decay.unwrap_or(weight_decay) });
            }
            groups
        }
        _ => vec![ParamGroup { params: tensors(params)?, lr, weight_decay }],
    };
    if groups.iter().all(|g| g.params.is_empty()) {
        return Err(misuse(call, "got an empty parameter list"));
    }
    Ok(groups)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SgdOptions {
    /// Learning rate (default 1e-3, as PyTorch).
    lr: Option<f64>,
    /// Momentum factor (default 0).
    momentum: Option<f64>,
    /// Dampening for momentum (default 0).
    dampening: Option<f64>,
    /// Nesterov momentum (default false).
    nesterov: Option<bool>,
    /// L2 penalty added to the gradient (default 0).
    weight_decay: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdamOptions {
    /// Learning rate (default 1e-3).
    lr: Option<f64>,
    /// Coefficients of the running averages (default {0.9, 0.999}).
    betas: Option<(f64, f64)>,
    /// Added to the denominator (default 1e-8).
    eps: Option<f64>,
    /// Weight decay (default 0 for adam, 1e-2 for adamw).
    weight_decay: Option<f64>,
    /// AMSGrad variant (default false).
    amsgrad: Option<bool>,
}

fn check_positive(call: &str, name: &str, v: f64) -> mlua::Result<()> {
    if v < 0.0 || !v.is_finite() {
        return Err(misuse(call, format!("{name} must be a finite number ≥ 0, got {v}")));
    }
    Ok(())
}

fn sgd(lua: &Lua, params: Table, opts: Option<Table>) -> mlua::Result<LuaOptimizer> {
    let call = "optim.sgd";
    let o: SgdOptions = options(lua, call, opts)?;
    let (lr, wd) = (o.lr.unwrap_or(1e-3), o.weight_decay.unwrap_or(0.0));
    let config = SgdConfig { momentum: o.momentum.unwrap_or(0.0), dampening: o.dampening.unwrap_or(0.0), nesterov: o.nesterov.unwrap_or(false) };
    for (name, v) in [("lr", lr), ("weight_decay", wd), ("momentum", config.momentum)] {
        check_positive(call, name, v)?;
    }
    let groups = param_groups(lua, call, &params, lr, wd)?;
    Ok(LuaOptimizer { inner: Box::new(Sgd::new(groups, config).or_misuse(call)?), kind: "sgd" })
}

fn adam(lua: &Lua, call: &'static str, params: Table, opts: Option<Table>, decoupled: bool) -> mlua::Result<LuaOptimizer> {
    let o: AdamOptions = options(lua, call, opts)?;
    let lr = o.lr.unwrap_or(1e-3);
    let wd = o.weight_decay.unwrap_or(if decoupled { 1e-2 } else { 0.0 });
    let (beta1, beta2) = o.betas.unwrap_or((0.9, 0.999));
    for (name, v) in [("lr", lr), ("weight_decay", wd), ("eps", o.eps.unwrap_or(1e-8))] {
        check_positive(call, name, v)?;
    }
    for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(misuse(call, format!("{name} must be in [0, 1), got {b}")));
        }
    }
    let config = AdamConfig { beta1, beta2, eps: o.eps.unwrap_or(1e-8), amsgrad: o.amsgrad.unwrap_or(false), decoupled_weight_decay: decoupled };
    let groups = param_groups(lua, call, &params, lr, wd)?;
    Ok(LuaOptimizer { inner: Box::new(Adam::new(groups, config)), kind: call })
}

fn state_to_lua(lua: &Lua, state: OptimizerState) -> mlua::Result<Table> {
    let out = lua.create_table()?;
    let params = lua.create_table()?;
    for (index, s) in state.params {
        let entry = lua.create_table()?;
        entry.set("step", s.step)?;
        for (name, t) in s.tensors {
            entry.set(name, wrap(lua, t)?)?;
        }
        params.set(index + 1, entry)?;
    }
    let groups = lua.create_table()?;
    for (lr, wd) in state.groups {
        let g = lua.create_table()?;
        g.set("lr", lr)?;
        g.set("weight_decay", wd)?;
        groups.raw_push(g)?;
    }
    out.set("state", params)?;
    out.set("param_groups", groups)?;
    Ok(out)
}

fn state_from_lua(call: &str, table: &Table) -> mlua::Result<OptimizerState> {
    let bad = |what: &str| misuse(call, format!("not an optimizer state dict: {what}"));
    let params_table: Table = table.get("state").map_err(|_| bad("missing 'state' table"))?;
    let groups_table: Table = table.get("param_groups").map_err(|_| bad("missing 'param_groups' table"))?;
    let mut params = BTreeMap::new();
    for pair in params_table.pairs::<i64, Table>() {
        let (index, entry) = pair.map_err(|_| bad("'state' must map parameter numbers to tables"))?;
        if index < 1 {
            return Err(bad("parameter numbers start at 1"));
        }
        let mut tensors = BTreeMap::new();
        let mut step = 0;
        for kv in entry.pairs::<String, Value>() {
            let (name, v) = kv?;
            if name == "step" {
                step = super::args::integer(call, &v)?;
            } else {
                tensors.insert(name, tensor_arg(call, &v)?);
            }
        }
        params.insert(index as usize - 1, ParamState { step, tensors });
    }
    let mut groups = Vec::new();
    for g in groups_table.sequence_values::<Table>() {
        let g = g?;
        groups.push((g.get::<f64>("lr").map_err(|_| bad("a group lacks 'lr'"))?, g.get::<f64>("weight_decay").map_err(|_| bad("a group lacks 'weight_decay'"))?));
    }
    Ok(OptimizerState { params, groups })
}

impl LuaOptimizer {
    /// The group at a 1-based Lua index.
    fn group_index(&self, call: &str, group: Option<i64>) -> mlua::Result<usize> {
        let n = self.inner.groups().len();
        let g = group.unwrap_or(1);
        if g < 1 || g as usize > n {
            return Err(misuse(call, format!("group {g} does not exist (the optimizer has {n})")));
        }
        Ok(g as usize - 1)
    }

    pub fn lrs(&self) -> Vec<f64> {
        self.inner.groups().iter().map(|g| g.lr).collect()
    }

    pub fn set_group_lr(&mut self, index: usize, lr: f64) {
        if let Some(g) = self.inner.groups_mut().get_mut(index) {
            g.lr = lr;
        }
    }
}

impl UserData for LuaOptimizer {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("step", |_, this, ()| this.inner.step().or_misuse("optimizer.step"));
        methods.add_method_mut("zero_grad", |_, this, ()| {
            this.inner.zero_grad();
            Ok(())
        });
        methods.add_method("get_lr", |_, this, group: Option<i64>| {
            let g = this.group_index("optimizer.get_lr", group)?;
            Ok(this.inner.groups()[g].lr)
        });
        methods.add_method_mut("set_lr", |_, this, (lr, group): (f64, Option<i64>)| {
            check_positive("optimizer.set_lr", "lr", lr)?;
            match group {
                None => (0..this.inner.groups().len()).for_each(|g| this.set_group_lr(g, lr)),
                Some(_) => {
                    let g = this.group_index("optimizer.set_lr", group)?;
                    this.set_group_lr(g, lr);
                }
            }
            Ok(())
        });
        methods.add_method("param_groups", |lua, this, ()| {
            let out = lua.create_table()?;
            for g in this.inner.groups() {
                let t = lua.create_table()?;
                t.set("lr", g.lr)?;
                t.set("weight_decay", g.weight_decay)?;
                let params = lua.create_table()?;
                for p in &g.params {
                    params.raw_push(wrap(lua, p.shallow_clone())?)?;
                }
                t.set("params", params)?;
                out.raw_push(t)?;
            }
            Ok(out)
        });
        methods.add_method("state_dict", |lua, this, ()| state_to_lua(lua, this.inner.state_dict().or_misuse("optimizer.state_dict")?));
        methods.add_method_mut("load_state_dict", |_, this, table: Table| {
            let state = state_from_lua("optimizer.load_state_dict", &table)?;
            this.inner.load_state_dict(&state).or_misuse("optimizer.load_state_dict")
        });
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            let n: usize = this.inner.groups().iter().map(|g| g.params.len()).sum();
            Ok(format!("{}({} parameters in {} group(s), lr={:?})", this.kind, n, this.inner.groups().len(), this.lrs()))
        });
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClipOptions {
    /// The p of the p-norm (default 2; `math.huge` for the max norm).
    norm_type: Option<f64>,
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("sgd", lua.create_function(|lua, (params, opts): (Table, Option<Table>)| sgd(lua, params, opts))?)?;
    t.set("adam", lua.create_function(|lua, (params, opts): (Table, Option<Table>)| adam(lua, "optim.adam", params, opts, false))?)?;
    t.set("adamw", lua.create_function(|lua, (params, opts): (Table, Option<Table>)| adam(lua, "optim.adamw", params, opts, true))?)?;
    t.set("clip_grad_norm", lua.create_function(|lua, (params, max_norm, opts): (Value, f64, Option<Table>)| {
        let call = "optim.clip_grad_norm";
        let o: ClipOptions = options(lua, call, opts)?;
        let list = match &params {
            Value::Table(t) => t.sequence_values::<Value>().map(|v| tensor_arg(call, &v?)).collect::<mlua::Result<Vec<_>>>()?,
            other => return Err(misuse(call, format!("expected a sequence of parameters, got {}", describe(other)))),
        };
        check_positive(call, "max_norm", max_norm)?;
        clip_grad_norm(&list, max_norm, o.norm_type.unwrap_or(2.0)).or_misuse(call)
    })?)?;
    Ok(t)
}
