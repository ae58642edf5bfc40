//! The modular-adapter part of `mt.peft` and of a model handle: bottleneck adapters, fusions,
//! composition blocks (`mt.peft.stack`, `fuse`, `parallel`, `batch_split`, `average`) and the
//! active setup (`model:set_active`, `model:train_fusion`, `model:fusion_weights`).
//! Conversions only; the logic is in src/peft/modular.rs and src/nn/compose.rs.

use mlua::{AnyUserData, Lua, LuaSerdeExt, MultiValue, Table, UserDataMethods, Value};

use super::args::{describe, misuse, OrMisuse};
use super::callbacks::{function, method, method_ud};
use super::models::LuaModule;
use crate::nn::compose::Setup;
use crate::peft::fusion::FusionConfig;
use crate::peft::modular;

/// The blocks a setup table may name in its `block` field.
const BLOCKS: &[&str] = &["Stack", "Fuse", "Parallel", "BatchSplit", "Average"];

/// How deep blocks may nest: deeper is a table that contains itself, or near enough.
const MAX_DEPTH: usize = 32;

/// A Lua setup: an adapter name, a block table from `mt.peft.stack(...)` and friends, or (at the
/// top) a list of names, which stacks them.
pub fn setup_arg(call: &str, v: Value, top: bool) -> mlua::Result<Setup> {
    setup_at(call, v, top, 0)
}

fn setup_at(call: &str, v: Value, top: bool, depth: usize) -> mlua::Result<Setup> {
    if depth > MAX_DEPTH {
        return Err(misuse(call, format!("the adapter setup nests blocks more than {MAX_DEPTH} deep (does a table contain itself?)")));
    }
    match v {
        Value::String(s) => {
            let name = s.to_str().map_err(|_| misuse(call, "an adapter name is not UTF-8 text"))?.to_string();
            Ok(if top { Setup::Stack(vec![Setup::Name(name)]) } else { Setup::Name(name) })
        }
        Value::Table(t) => {
            let block: Option<String> = t.get("block")?;
            let children = t.sequence_values::<Value>().map(|c| setup_at(call, c?, false, depth + 1)).collect::<mlua::Result<Vec<_>>>()?;
            let setup = match block.as_deref() {
                None if top => Setup::Stack(children),
                None => return Err(misuse(call, "a nested setup must be a block (mt.peft.stack, fuse, parallel, batch_split, average) or an adapter name")),
                Some("Stack") => Setup::Stack(children),
                Some("Fuse") => Setup::Fuse(children),
                Some("Parallel") => Setup::Parallel(children),
                Some("BatchSplit") => {
                    let sizes: Vec<i64> = t.get::<Option<Vec<i64>>>("batch_sizes").map_err(|_| misuse(call, "BatchSplit's batch_sizes must be a list of integers"))?.ok_or_else(|| misuse(call, "BatchSplit needs batch_sizes"))?;
                    Setup::BatchSplit(children, sizes)
                }
                Some("Average") => {
                    let weights: Option<Vec<f64>> = t.get("weights").map_err(|_| misuse(call, "Average's weights must be a list of numbers"))?;
                    let n = children.len();
                    let weights = weights.unwrap_or_else(|| vec![1.0; n]);
                    let sum: f64 = weights.iter().sum();
                    Setup::Average(children, weights.iter().map(|w| if sum != 0.0 { w / sum } else { *w }).collect())
                }
                Some(other) => return Err(misuse(call, format!("unknown block '{other}' (blocks: {})", BLOCKS.join(", ")))),
            };
            setup.check().or_misuse(call)?;
            Ok(setup)
        }
        other => Err(misuse(call, format!("the adapter setup must be an adapter name or a block (mt.peft.stack, ...), got {}", describe(&other)))),
    }
}

/// A setup as the table `mt.peft.stack(...)` and friends make (an adapter as its name).
fn setup_value(lua: &Lua, s: &Setup) -> mlua::Result<Value> {
    if let Setup::Name(n) = s {
        return Ok(Value::String(lua.create_string(n)?));
    }
    let t = lua.create_table()?;
    t.set("block", s.kind())?;
    for (i, c) in s.children().iter().enumerate() {
        t.set(i + 1, setup_value(lua, c)?)?;
    }
    match s {
        Setup::BatchSplit(_, sizes) => t.set("batch_sizes", sizes.clone())?,
        Setup::Average(_, weights) => t.set("weights", weights.clone())?,
        _ => {}
    }
    Ok(Value::Table(t))
}

/// `mt.peft.stack("a", "b")` and the other block constructors: a table naming the block, its
/// children in order and its options (`batch_sizes`, `weights`) from a trailing table.
fn block(lua: &Lua, kind: &'static str, option: Option<&'static str>, args: MultiValue) -> mlua::Result<Table> {
    let call = if kind == "BatchSplit" { "peft.batch_split".to_string() } else { format!("peft.{}", kind.to_lowercase()) };
    let t = lua.create_table()?;
    t.set("block", kind)?;
    let mut args: Vec<Value> = args.into_iter().collect();
    if let Some(key) = option {
        match args.last() {
            Some(Value::Table(o)) if o.get::<Option<String>>("block")?.is_none() && o.raw_len() == 0 => {
                for pair in o.pairs::<String, Value>() {
                    let (k, v) = pair?;
                    if k != key {
                        return Err(misuse(&call, format!("unknown option '{k}' ({key} is the only one)")));
                    }
                    t.set(key, v)?;
                }
                args.pop();
            }
            _ if kind == "BatchSplit" => return Err(misuse(&call, "give the batch sizes last: mt.peft.batch_split(\"a\", \"b\", { batch_sizes = { 2, 2 } })")),
            _ => {}
        }
    }
    for (i, a) in args.into_iter().enumerate() {
        let _ = setup_arg(&call, a.clone(), false)?;
        t.set(i + 1, a)?;
    }
    setup_arg(&call, Value::Table(t.clone()), false)?;
    Ok(t)
}

/// `mt.peft.fusion(model, { "a", "b" }, { config = "dynamic" | "static", ... })`: the fusion's name.
fn fusion(lua: &Lua, (model, names, opts): (AnyUserData, Value, Option<Table>)) -> mlua::Result<String> {
    let call = "peft.fusion";
    let handle = model.borrow::<LuaModule>().map_err(|_| misuse(call, "the first argument must be a model (from mt.models.load)"))?;
    handle.is_root(call)?;
    let names: Vec<String> = match names {
        Value::Table(t) => t.sequence_values::<String>().collect::<mlua::Result<_>>().map_err(|_| misuse(call, "the adapters to fuse must be a list of names"))?,
        other => return Err(misuse(call, format!("the adapters to fuse must be a list of names, got {}", describe(&other)))),
    };
    let options: serde_json::Map<String, serde_json::Value> = match opts {
        Some(t) => match lua.from_value::<serde_json::Value>(Value::Table(t)).map_err(|e| misuse(call, format!("options: {e}")))? {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Array(a) if a.is_empty() => Default::default(),
            other => return Err(misuse(call, format!("expected a table of named options, got {other}"))),
        },
        None => Default::default(),
    };
    let config = FusionConfig::from_options(options).or_misuse(call)?;
    let mut m = handle.model_mut(call)?;
    modular::add_fusion(&mut m, &names, config, None).or_misuse(call)
}

pub fn add_functions(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set("fusion", function(lua, "peft.fusion", fusion)?)?;
    t.set("stack", function(lua, "peft.stack", |lua, args: MultiValue| block(lua, "Stack", None, args))?)?;
    t.set("fuse", function(lua, "peft.fuse", |lua, args: MultiValue| block(lua, "Fuse", None, args))?)?;
    t.set("parallel", function(lua, "peft.parallel", |lua, args: MultiValue| block(lua, "Parallel", None, args))?)?;
    t.set("batch_split", function(lua, "peft.batch_split", |lua, args: MultiValue| block(lua, "BatchSplit", Some("batch_sizes"), args))?)?;
    t.set("average", function(lua, "peft.average", |lua, args: MultiValue| block(lua, "Average", Some("weights"), args))?)?;
    Ok(())
}

pub fn add_model_methods<M: UserDataMethods<LuaModule>>(methods: &mut M) {
    for (name, train) in [("set_active", false), ("train_fusion", true)] {
        let call = format!("model.{name}");
        method_ud(methods, name, call.clone(), move |_, ud, setup: Value| {
            let setup = match (train, &setup) {
                // train_fusion also takes the adapters' names: their fusion.
                (true, Value::Table(t)) if t.get::<Option<String>>("block")?.is_none() => Setup::Fuse(t.sequence_values::<String>().map(|n| n.map(Setup::Name)).collect::<mlua::Result<_>>().map_err(|_| misuse(&call, "give a list of adapter names or a setup"))?),
                _ => setup_arg(&call, setup, true)?,
            };
            {
                let this = ud.borrow::<LuaModule>()?;
                this.is_root(&call)?;
                let mut m = this.model_mut(&call)?;
                if train { modular::train_fusion(&mut m, setup) } else { modular::set_active(&mut m, setup) }.or_misuse(&call)?;
            }
            Ok(ud)
        });
    }
    method(methods, "fusions", "model.fusions", |lua, this, ()| {
        let call = "model.fusions";
        this.is_root(call)?;
        let m = this.model(call)?;
        let list = lua.create_table()?;
        for (i, f) in m.adapters.fusions.iter().enumerate() {
            let t = lua.create_table()?;
            t.set("name", f.name.as_str())?;
            t.set("adapters", f.adapters.clone())?;
            t.set("trainable", modular::is_trainable(&m, &f.name))?;
            t.set("temperature", modular::fusion_temperature(&m, &f.name).or_misuse(call)?)?;
            list.set(i + 1, t)?;
        }
        Ok(list)
    });
    method(methods, "set_fusion_temperature", "model.set_fusion_temperature", |_, this, (name, t): (String, f64)| {
        let call = "model.set_fusion_temperature";
        this.is_root(call)?;
        modular::set_fusion_temperature(&*this.model(call)?, &name, t).or_misuse(call)
    });
    method(methods, "active_setup", "model.active_setup", |lua, this, ()| {
        let call = "model.active_setup";
        this.is_root(call)?;
        match &this.model(call)?.adapters.setup {
            Some(s) => setup_value(lua, s),
            None => Ok(Value::Nil),
        }
    });
    method(methods, "delete_fusion", "model.delete_fusion", |_, this, name: String| {
        let call = "model.delete_fusion";
        this.is_root(call)?;
        modular::delete_fusion(&mut *this.model_mut(call)?, &name).or_misuse(call)
    });
    method(methods, "fusion_weights", "model.fusion_weights", |lua, this, name: Option<String>| {
        let call = "model.fusion_weights";
        this.is_root(call)?;
        let (weights, points, adapters) = modular::fusion_weights(&*this.model(call)?, name.as_deref()).or_misuse(call)?;
        Ok((super::tensor::wrap(lua, weights)?, points, adapters))
    });
    method(methods, "gates", "model.gates", |lua, this, name: Option<String>| {
        let call = "model.gates";
        this.is_root(call)?;
        let (values, layers, parts) = modular::gates(&*this.model(call)?, name.as_deref()).or_misuse(call)?;
        Ok((super::tensor::wrap(lua, values)?, layers, parts))
    });
    method(methods, "fusion_regularization", "model.fusion_regularization", |lua, this, ()| {
        let call = "model.fusion_regularization";
        this.is_root(call)?;
        match modular::fusion_regularization(&*this.model(call)?).or_misuse(call)? {
            Some(t) => Ok(Value::UserData(lua.create_userdata(super::tensor::wrap(lua, t)?)?)),
            None => Ok(Value::Nil),
        }
    });
}
