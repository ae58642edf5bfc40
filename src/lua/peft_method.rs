//! Adapter methods written in Lua (`mt.peft.register`, `mt.peft.add`): a definition table with
//! `init(self, layer, opts)` (sets the parameters as tensor fields of `self`), `forward(self, x,
//! base_out)` and optionally `merge(self, weight)` / `unmerge(self, weight)`. Each layer's `self`
//! stays in the Lua registry and its tensors are the layer's parameters in the model tree, so
//! they train, save and load as a built-in's. The definition is looked up by name at every call,
//! so registering it again (a hot reload of its file) swaps the functions and keeps the
//! parameters.

use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use mlua::{Function, Lua, LuaSerdeExt, RegistryKey, Table, Value, WeakLua};
use serde_json::Map;
use tch::{Kind, Tensor};

use super::tensor::{as_tensor, wrap};
use crate::module_children;
use crate::nn::attach::LinearAdapter;
use crate::nn::hooks::Ctx;
use crate::nn::linear::Linear;
use crate::nn::module::{Module, Owner};
use crate::peft::custom::CustomMethod;

const METHODS: &str = "moontune.peft.methods";

/// The registered definitions, by name.
pub fn methods(lua: &Lua) -> mlua::Result<Table> {
    match lua.named_registry_value::<Option<Table>>(METHODS)? {
        Some(t) => Ok(t),
        None => {
            let t = lua.create_table()?;
            lua.set_named_registry_value(METHODS, &t)?;
            Ok(t)
        }
    }
}

/// The definition of `name`, checked.
fn definition(lua: &Lua, name: &str) -> Result<Table> {
    let t: Option<Table> = methods(lua).map_err(|e| anyhow!("{e}"))?.get(name).map_err(|e| anyhow!("{e}"))?;
    t.ok_or_else(|| anyhow!("no adapter method '{name}' is registered (mt.peft.register)"))
}

fn function(def: &Table, key: &str) -> Result<Option<Function>> {
    def.get::<Option<Function>>(key).map_err(|e| anyhow!("'{key}' of the method must be a function: {e}"))
}

/// A registered method, as the core builds layers of it.
pub struct LuaMethod {
    pub lua: WeakLua,
    pub name: String,
}

impl CustomMethod for LuaMethod {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(&self, owner: &str, base: &Linear, options: &Map<String, serde_json::Value>, kind: Kind) -> Result<Box<dyn LinearAdapter>> {
        let lua = self.lua.try_upgrade().context("the Lua state is gone")?;
        let def = definition(&lua, &self.name)?;
        let init = function(&def, "init")?.with_context(|| format!("method '{}' has no init(self, layer, opts)", self.name))?;
        let err = |e: mlua::Error| anyhow!("{e}");
        let this = lua.create_table().map_err(err)?;
        let layer = lua.create_table().map_err(err)?;
        layer.set("name", base.name.as_str()).map_err(err)?;
        layer.set("in_features", base.in_features).map_err(err)?;
        layer.set("out_features", base.out_features).map_err(err)?;
        let opts = lua.to_value(&serde_json::Value::Object(options.clone())).map_err(err)?;
        init.call::<()>((this.clone(), layer, opts)).map_err(|e| anyhow!("init: {e}"))?;
        // Its tensor fields are its parameters, in the adapter dtype, on the layer's device.
        let mut params = Vec::new();
        for pair in this.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(err)?;
            if let (Value::String(k), Some(t)) = (&k, as_tensor(&v)) {
                params.push((k.to_str().map_err(err)?.to_string(), t));
            }
        }
        if params.is_empty() {
            bail!("init set no tensor fields on self: a method's parameters are the tensors it puts there");
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let device = base.weight.device();
        let mut owned = Vec::new();
        for (k, t) in params {
            let p = t.f_detach()?.f_to_dtype_layout((kind, device), false, true)?.f_set_requires_grad(true)?;
            this.set(k.as_str(), wrap(&lua, p.shallow_clone()).map_err(err)?).map_err(err)?;
            owned.push((k, p));
        }
        let key = lua.create_registry_value(this).map_err(err)?;
        Ok(Box::new(LuaAdapter { owner: owner.to_string(), method: self.name.clone(), lua: self.lua.clone(), params: owned, this: Rc::new(key) }))
    }
}

/// One layer of a Lua-defined method.
pub struct LuaAdapter {
    owner: String,
    method: String,
    lua: WeakLua,
    params: Vec<(String, Tensor)>,
    /// Its `self` table.
    this: Rc<RegistryKey>,
}

impl LuaAdapter {
    /// Calls `key(self, tensor)` of the current definition, expecting a tensor back.
    fn call(&self, key: &str, t: &Tensor, extra: Option<&Tensor>) -> Result<Option<Tensor>> {
        let lua = self.lua.try_upgrade().context("the Lua state is gone")?;
        let def = definition(&lua, &self.method)?;
        let Some(f) = function(&def, key)? else { return Ok(None) };
        let err = |e: mlua::Error| anyhow!("{}.{key}: {e}", self.method);
        let this: Table = lua.registry_value(&self.this).map_err(err)?;
        let a = wrap(&lua, t.shallow_clone()).map_err(err)?;
        let out: Value = match extra {
            Some(b) => f.call((this, a, wrap(&lua, b.shallow_clone()).map_err(err)?)).map_err(err)?,
            None => f.call((this, a)).map_err(err)?,
        };
        as_tensor(&out).map(Some).ok_or_else(|| anyhow!("{}.{key} returned {}, expected a tensor", self.method, super::args::describe(&out)))
    }
}

impl Module for LuaAdapter {
    fn class_name(&self) -> &'static str {
        "LuaAdapter"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        self.params.iter().map(|(k, t)| (k.as_str(), t)).collect()
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    fn extra_repr(&self) -> String {
        format!("method={}", self.method)
    }
    module_children!();
}

impl LinearAdapter for LuaAdapter {
    fn forward(&self, _ctx: &Ctx, _base: &Linear, x: &Tensor, base_out: Tensor) -> Result<Tensor> {
        self.call("forward", x, Some(&base_out))?.with_context(|| format!("method '{}' has no forward(self, x, base_out)", self.method))
    }

    fn merge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.call("merge", weight, None)?.with_context(|| format!("method '{}' has no merge(self, weight)", self.method))?;
        Ok((w, bias.map(|b| b.shallow_clone())))
    }

    fn unmerge(&mut self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let w = self.call("unmerge", weight, None)?.with_context(|| format!("method '{}' has no unmerge(self, weight)", self.method))?;
        Ok((w, bias.map(|b| b.shallow_clone())))
    }
}
