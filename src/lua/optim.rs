//! `mt.optim`: optimizers as userdata (`sgd`, `adam`, `adamw`) over the Rust core, parameter
//! groups given as lists of parameter handles or `named_parameters` tables, state dicts as Lua
//! tables (keyed by parameter name, or position for unnamed ones), and `clip_grad_norm`.

use mlua::{Lua, Table, UserData, UserDataFields, UserDataMethods, Value};
use serde::Deserialize;
use tch::Tensor;

use super::args::{describe, integer, misuse, options, text, OrMisuse};
use super::tensor::{named_tensor_arg, tensor_arg, wrap};
use crate::optim::adam::{Adam, AdamConfig};
use crate::optim::clip::clip_grad_norm;
use crate::optim::sgd::{Sgd, SgdConfig};
use crate::optim::state::GroupState;
use crate::optim::{GroupSpec, Kernel, Optim, Optimizer, OptimizerState, ParamKey, ParamState};
use super::callbacks::{function, method, method_mut, method_ud};

/// An optimizer owned by Lua.
pub struct LuaOptimizer {
    pub inner: Box<dyn Optimizer>,
    /// The defaults new groups get (`add_param_group`).
    defaults: (f64, f64),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupOptions {
    lr: Option<f64>,
    weight_decay: Option<f64>,
}

/// The parameters in a Lua value: a sequence of parameter handles (each with the name it
/// carries), or a table of name → parameter (`named_parameters`), taken in name order.
fn param_list(call: &str, list: &Table) -> mlua::Result<Vec<(Tensor, Option<String>)>> {
    if list.raw_len() > 0 || list.is_empty() {
        return list.sequence_values::<Value>().map(|v| named_tensor_arg(call, &v?)).collect();
    }
    let mut named = Vec::new();
    for pair in list.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(name) = &k else { return Err(misuse(call, format!("a table of parameters is a sequence or a name → parameter map, found key {}", describe(&k)))) };
        let name = text(call, "a parameter name", name)?;
        named.push((tensor_arg(&format!("{call}: '{name}'"), &v)?, Some(name)));
    }
    named.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(named)
}

/// Reads `params`: parameters (see `param_list`), or a sequence of groups
/// `{ params = ..., lr = ?, weight_decay = ? }` whose settings override the defaults.
fn group_specs(lua: &Lua, call: &str, params: &Table) -> mlua::Result<Vec<GroupSpec>> {
    let is_groups = matches!(params.raw_get::<Value>(1)?, Value::Table(_));
    if !is_groups {
        return Ok(vec![GroupSpec { params: param_list(call, params)?, lr: None, weight_decay: None }]);
    }
    let mut specs = Vec::new();
    for g in params.sequence_values::<Table>() {
        let g = g.map_err(|e| misuse(call, format!("a parameter group must be a table: {e}")))?;
        specs.push(group_spec(lua, call, &g)?);
    }
    Ok(specs)
}

fn group_spec(lua: &Lua, call: &str, g: &Table) -> mlua::Result<GroupSpec> {
    let list: Table = g.raw_get("params").map_err(|_| misuse(call, "a parameter group needs 'params'"))?;
    let settings = lua.create_table()?;
    for pair in g.pairs::<Value, Value>() {
        let (k, v) = pair?;
        if !matches!(&k, Value::String(s) if s == "params") {
            settings.raw_set(k, v)?;
        }
    }
    let o: GroupOptions = options(lua, call, Some(settings))?;
    Ok(GroupSpec { params: param_list(call, &list)?, lr: o.lr, weight_decay: o.weight_decay })
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
    /// torch.optim's foreach path (libtorch's list ops).
    foreach: Option<bool>,
    /// torch.optim's fused kernel (the default when neither is given).
    fused: Option<bool>,
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
    /// torch.optim's foreach path (libtorch's list ops).
    foreach: Option<bool>,
    /// torch.optim's fused kernel (the default when neither is given).
    fused: Option<bool>,
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
    check_positive(call, "momentum", config.momentum)?;
    let kernel = Kernel::choose(o.foreach, o.fused).or_misuse(call)?;
    let rule = Sgd::new(config).or_misuse(call)?;
    let inner = Optim::new(rule, kernel, group_specs(lua, call, &params)?, lr, wd).or_misuse(call)?;
    Ok(LuaOptimizer { inner: Box::new(inner), defaults: (lr, wd) })
}

fn adam(lua: &Lua, call: &'static str, params: Table, opts: Option<Table>, decoupled: bool) -> mlua::Result<LuaOptimizer> {
    let o: AdamOptions = options(lua, call, opts)?;
    let lr = o.lr.unwrap_or(1e-3);
    let wd = o.weight_decay.unwrap_or(if decoupled { 1e-2 } else { 0.0 });
    let (beta1, beta2) = o.betas.unwrap_or((0.9, 0.999));
    check_positive(call, "eps", o.eps.unwrap_or(1e-8))?;
    for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(misuse(call, format!("{name} must be in [0, 1), got {b}")));
        }
    }
    let config = AdamConfig { beta1, beta2, eps: o.eps.unwrap_or(1e-8), amsgrad: o.amsgrad.unwrap_or(false), decoupled_weight_decay: decoupled };
    let kernel = Kernel::choose(o.foreach, o.fused).or_misuse(call)?;
    let inner = Optim::new(Adam { config }, kernel, group_specs(lua, call, &params)?, lr, wd).or_misuse(call)?;
    Ok(LuaOptimizer { inner: Box::new(inner), defaults: (lr, wd) })
}

fn key_to_lua(lua: &Lua, key: &ParamKey) -> mlua::Result<Value> {
    Ok(match key {
        ParamKey::Name(n) => Value::String(lua.create_string(n)?),
        ParamKey::Index(i) => Value::Integer(*i as i64 + 1),
    })
}

fn key_from_lua(call: &str, v: &Value) -> mlua::Result<ParamKey> {
    match v {
        Value::String(s) => Ok(ParamKey::Name(text(call, "a parameter name", s)?)),
        other => {
            let i = integer(call, other).map_err(|_| misuse(call, format!("a parameter is named by a string or a number, got {}", describe(other))))?;
            if i < 1 {
                return Err(misuse(call, "parameter numbers start at 1"));
            }
            Ok(ParamKey::Index(i as usize - 1))
        }
    }
}

fn state_to_lua(lua: &Lua, state: OptimizerState) -> mlua::Result<Table> {
    let params = lua.create_table()?;
    for (key, s) in state.params {
        let entry = lua.create_table()?;
        entry.set("step", s.step)?;
        for (name, t) in s.tensors {
            entry.set(name, wrap(lua, t)?)?;
        }
        params.set(key_to_lua(lua, &key)?, entry)?;
    }
    let groups = lua.create_table()?;
    for g in state.groups {
        let t = lua.create_table()?;
        t.set("lr", g.lr)?;
        t.set("weight_decay", g.weight_decay)?;
        let keys = lua.create_table()?;
        for k in &g.params {
            keys.raw_push(key_to_lua(lua, k)?)?;
        }
        t.set("params", keys)?;
        groups.raw_push(t)?;
    }
    let out = lua.create_table()?;
    out.set("state", params)?;
    out.set("param_groups", groups)?;
    Ok(out)
}

fn state_from_lua(call: &str, table: &Table) -> mlua::Result<OptimizerState> {
    let bad = |what: &str| misuse(call, format!("not an optimizer state dict: {what}"));
    let params_table: Table = table.get("state").map_err(|_| bad("missing 'state' table"))?;
    let groups_table: Table = table.get("param_groups").map_err(|_| bad("missing 'param_groups' table"))?;
    let mut params = std::collections::BTreeMap::new();
    for pair in params_table.pairs::<Value, Value>() {
        let (k, entry) = pair?;
        let key = key_from_lua(call, &k)?;
        let Value::Table(entry) = entry else { return Err(bad("each entry of 'state' must be a table")) };
        let mut s = ParamState { step: 0, tensors: Default::default() };
        for kv in entry.pairs::<String, Value>() {
            let (name, v) = kv?;
            if name == "step" {
                s.step = integer(call, &v)?;
            } else {
                s.tensors.insert(name, tensor_arg(call, &v)?);
            }
        }
        params.insert(key, s);
    }
    let mut groups = Vec::new();
    for g in groups_table.sequence_values::<Table>() {
        let g = g?;
        let keys: Option<Table> = g.get("params")?;
        let keys = match keys {
            Some(t) => t.sequence_values::<Value>().map(|v| key_from_lua(call, &v?)).collect::<mlua::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        groups.push(GroupState { lr: g.get::<f64>("lr").map_err(|_| bad("a group lacks 'lr'"))?, weight_decay: g.get::<f64>("weight_decay").map_err(|_| bad("a group lacks 'weight_decay'"))?, params: keys });
    }
    Ok(OptimizerState { params, groups })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ZeroGradOptions {
    /// Unset the gradients (PyTorch's `set_to_none`, default true) rather than zero them.
    pub set_to_none: Option<bool>,
}

/// A group number as scripts give it (1-based, as `opt:param_groups()` lists them) as an index.
pub fn group_index(call: &str, group: Option<i64>, groups: usize) -> mlua::Result<usize> {
    let g = group.unwrap_or(1);
    if g < 1 || g as usize > groups {
        return Err(misuse(call, format!("group {g} does not exist: groups are numbered from 1, as opt:param_groups() lists them (this optimizer has {groups})")));
    }
    Ok(g as usize - 1)
}

/// What a parameter group holds, as PyTorch's group dicts: `initial_lr` only under a schedule.
const GROUP_FIELDS: [&str; 4] = ["params", "lr", "weight_decay", "initial_lr"];

/// A live view of one parameter group (`opt:param_groups()[i]`): reading gives the current
/// values, assigning `lr` or `weight_decay` changes the optimizer (`lr` as `set_lr` does).
pub struct LuaParamGroup {
    optimizer: mlua::AnyUserData,
    index: usize,
}

impl LuaParamGroup {
    fn field(&self, lua: &Lua, key: &str) -> mlua::Result<Value> {
        let opt = self.optimizer.borrow::<LuaOptimizer>()?;
        let g = opt.inner.groups().get(self.index).ok_or_else(|| misuse("param_group", "the group no longer exists"))?;
        Ok(match key {
            "lr" => Value::Number(g.lr),
            "weight_decay" => Value::Number(g.weight_decay),
            "initial_lr" => g.initial_lr.map(Value::Number).unwrap_or(Value::Nil),
            "params" => {
                let params = lua.create_table()?;
                for p in &g.params {
                    params.raw_push(match &p.name {
                        Some(n) => super::tensor::wrap_named(lua, p.tensor.shallow_clone(), n)?,
                        None => wrap(lua, p.tensor.shallow_clone())?,
                    })?;
                }
                Value::Table(params)
            }
            other => return Err(misuse("param_group", format!("no field '{other}' (fields: {})", GROUP_FIELDS.join(", ")))),
        })
    }

    /// `pairs(group)`: the fields that have a value, as `next` would give them.
    fn pairs(&self, lua: &Lua) -> mlua::Result<mlua::Function> {
        let view = LuaParamGroup { optimizer: self.optimizer.clone(), index: self.index };
        lua.create_function(move |lua, (_, key): (Value, Option<String>)| {
            let start = match key {
                Some(k) => GROUP_FIELDS.iter().position(|f| *f == k).map_or(GROUP_FIELDS.len(), |i| i + 1),
                None => 0,
            };
            for name in &GROUP_FIELDS[start..] {
                let value = view.field(lua, name)?;
                if !value.is_nil() {
                    return Ok((Value::String(lua.create_string(name)?), value));
                }
            }
            Ok((Value::Nil, Value::Nil))
        })
    }

    fn set(&self, key: &str, value: f64) -> mlua::Result<()> {
        let call = "param_group";
        let mut opt = self.optimizer.borrow_mut::<LuaOptimizer>()?;
        let g = opt.inner.groups_mut().get_mut(self.index).ok_or_else(|| misuse(call, "the group no longer exists"))?;
        check_positive(call, key, value)?;
        match key {
            "lr" => g.set_lr(value),
            "weight_decay" => g.weight_decay = value,
            other => return Err(misuse(call, format!("'{other}' cannot be set (lr and weight_decay can)"))),
        }
        Ok(())
    }
}

impl UserData for LuaParamGroup {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "param_group");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::Index, |lua, this, key: String| this.field(lua, &key));
        methods.add_meta_method(mlua::MetaMethod::Pairs, |lua, this, ()| this.pairs(lua));
        methods.add_meta_method(mlua::MetaMethod::NewIndex, |_, this, (key, value): (String, Value)| {
            let v = match value {
                Value::Integer(i) => i as f64,
                Value::Number(n) => n,
                other => return Err(misuse("param_group", format!("'{key}' must be a number, got {}", describe(&other)))),
            };
            this.set(&key, v)
        });
    }
}

impl LuaOptimizer {
    fn group_index(&self, call: &str, group: Option<i64>) -> mlua::Result<usize> {
        group_index(call, group, self.inner.groups().len())
    }

    pub fn lrs(&self) -> Vec<f64> {
        self.inner.groups().iter().map(|g| g.lr).collect()
    }
}

impl UserData for LuaOptimizer {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field(mlua::MetaMethod::Type, "optimizer");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method_mut(methods, "step", "optimizer.step", |_, this, ()| this.inner.step().or_misuse("optimizer.step"));
        method_mut(methods, "zero_grad", "optimizer.zero_grad", |lua, this, opts: Option<Table>| {
            let o: ZeroGradOptions = options(lua, "optimizer.zero_grad", opts)?;
            this.inner.zero_grad(o.set_to_none.unwrap_or(true)).or_misuse("optimizer.zero_grad")
        });
        method(methods, "get_lr", "optimizer.get_lr", |_, this, group: Option<i64>| {
            let g = this.group_index("optimizer.get_lr", group)?;
            Ok(this.inner.groups()[g].lr)
        });
        method_mut(methods, "set_lr", "optimizer.set_lr", |_, this, (lr, group): (f64, Option<i64>)| {
            check_positive("optimizer.set_lr", "lr", lr)?;
            let groups: Vec<usize> = match group {
                None => (0..this.inner.groups().len()).collect(),
                Some(_) => vec![this.group_index("optimizer.set_lr", group)?],
            };
            for g in groups {
                this.inner.groups_mut()[g].set_lr(lr);
            }
            Ok(())
        });
        method_mut(methods, "add_param_group", "optimizer.add_param_group", |lua, this, group: Table| {
            let call = "optimizer.add_param_group";
            let spec = group_spec(lua, call, &group)?;
            let (lr, wd) = this.defaults;
            this.inner.add_param_groups(vec![spec], lr, wd).or_misuse(call)
        });
        method_ud(methods, "param_groups", "optimizer.param_groups", |lua, ud, (): ()| {
            let n = ud.borrow::<LuaOptimizer>()?.inner.groups().len();
            let out = lua.create_table()?;
            for index in 0..n {
                out.raw_push(LuaParamGroup { optimizer: ud.clone(), index })?;
            }
            Ok(out)
        });
        method(methods, "kernel", "optimizer.kernel", |_, this, ()| Ok(this.inner.kernel().name()));
        method(methods, "state_dict", "optimizer.state_dict", |lua, this, ()| state_to_lua(lua, this.inner.state_dict().or_misuse("optimizer.state_dict")?));
        method_mut(methods, "load_state_dict", "optimizer.load_state_dict", |_, this, table: Table| {
            let state = state_from_lua("optimizer.load_state_dict", &table)?;
            this.inner.load_state_dict(&state).or_misuse("optimizer.load_state_dict")
        });
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            let n: usize = this.inner.groups().iter().map(|g| g.params.len()).sum();
            Ok(format!("{}({} parameters in {} group(s), lr={:?}, {})", this.inner.name(), n, this.inner.groups().len(), this.lrs(), this.inner.kernel().name()))
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
    t.set("sgd", function(lua, "optim.sgd", |lua, (params, opts): (Table, Option<Table>)| sgd(lua, params, opts))?)?;
    t.set("adam", function(lua, "optim.adam", |lua, (params, opts): (Table, Option<Table>)| adam(lua, "optim.adam", params, opts, false))?)?;
    t.set("adamw", function(lua, "optim.adamw", |lua, (params, opts): (Table, Option<Table>)| adam(lua, "optim.adamw", params, opts, true))?)?;
    t.set("clip_grad_norm", function(lua, "optim.clip_grad_norm", |lua, (params, max_norm, opts): (Value, f64, Option<Table>)| {
        let call = "optim.clip_grad_norm";
        let o: ClipOptions = options(lua, call, opts)?;
        let list = match &params {
            Value::Table(t) => param_list(call, t)?.into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
            other => return Err(misuse(call, format!("expected parameters (a sequence or a named_parameters table), got {}", describe(other)))),
        };
        check_positive(call, "max_norm", max_norm)?;
        clip_grad_norm(&list, max_norm, o.norm_type.unwrap_or(2.0)).or_misuse(call)
    })?)?;
    Ok(t)
}
