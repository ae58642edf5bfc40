//! The native part of `mt.checkpoint` (the rest is stdlib/moontune/checkpoint.lua): every random
//! stream's state (libtorch's CPU and CUDA generators, the recipe's `math.random`), the atomic
//! directory write (src/checkpoint/store.rs), and reading a checkpoint's manifest.

use std::path::Path;

use mlua::{Lua, LuaSerdeExt, MultiValue, Table, Value};
use tch::Device;

use super::args::{describe, failure, misuse, OrMisuse};
use super::callbacks::function;
use super::tensor::{tensor_arg, wrap};
use crate::checkpoint::store;
use crate::tensor::shim::{rng_state, set_rng_state};

/// `{ cpu = tensor, cuda = { tensor, ... }, lua = { four integers } }`.
fn random_state(lua: &Lua, _: ()) -> mlua::Result<Table> {
    let call = "checkpoint.random_state";
    let t = lua.create_table()?;
    t.set("cpu", wrap(lua, rng_state(Device::Cpu).or_misuse(call)?)?)?;
    let cuda = lua.create_table()?;
    if tch::Cuda::is_available() {
        for i in 0..tch::Cuda::device_count() {
            cuda.push(wrap(lua, rng_state(Device::Cuda(i as usize)).or_misuse(call)?)?)?;
        }
    }
    t.set("cuda", cuda)?;
    t.set("lua", lua.create_sequence_from(super::random::state(lua)?)?)?;
    Ok(t)
}

fn set_random_state(lua: &Lua, t: Table) -> mlua::Result<()> {
    let call = "checkpoint.set_random_state";
    set_rng_state(Device::Cpu, &tensor_arg(call, &t.get::<Value>("cpu")?)?).or_misuse(call)?;
    if let Value::Table(cuda) = t.get::<Value>("cuda")? {
        let available = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
        for (i, state) in cuda.sequence_values::<Value>().enumerate() {
            if i >= available {
                return Err(misuse(call, format!("the state has CUDA generator {} but this machine has {available} CUDA device(s)", i + 1)));
            }
            set_rng_state(Device::Cuda(i), &tensor_arg(call, &state?)?).or_misuse(call)?;
        }
    }
    let words: Vec<i64> = match t.get::<Value>("lua")? {
        Value::Table(w) => w.sequence_values::<i64>().collect::<mlua::Result<_>>().map_err(|_| misuse(call, "lua must be four integers"))?,
        other => return Err(misuse(call, format!("lua must be four integers, got {}", describe(&other)))),
    };
    let words: [i64; 4] = words.try_into().map_err(|_| misuse(call, "lua must be four integers"))?;
    super::random::set_state(lua, words)
}

/// What a value in a recipe's state is, for deciding how to save it: "model" (a loaded model),
/// "submodule", "optimizer", "schedule", "data iterator", "tensor", "dataset", "tokenizer",
/// "userdata" (anything else native), or Lua's own type name.
fn kind(_: &Lua, v: Value) -> mlua::Result<&'static str> {
    Ok(match &v {
        Value::UserData(ud) => {
            if let Ok(m) = ud.borrow::<super::models::LuaModule>() {
                if m.path.is_empty() { "model" } else { "submodule" }
            } else if ud.is::<super::optim::LuaOptimizer>() {
                "optimizer"
            } else if ud.is::<super::sched::LuaSchedule>() {
                "schedule"
            } else if ud.is::<super::data::LuaDataIter>() {
                "data iterator"
            } else if ud.is::<super::tensor::LuaTensor>() {
                "tensor"
            } else if ud.is::<super::data::LuaDataset>() {
                "dataset"
            } else if ud.is::<super::tokenizer::LuaTokenizer>() {
                "tokenizer"
            } else {
                "userdata"
            }
        }
        other => other.type_name(),
    })
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("kind", function(lua, "checkpoint.kind", kind)?)?;
    t.set("random_state", function(lua, "checkpoint.random_state", random_state)?)?;
    t.set("set_random_state", function(lua, "checkpoint.set_random_state", set_random_state)?)?;
    // `begin(target)` → a temporary sibling to write into; `commit(tmp, target)` puts it in place.
    t.set("begin", function(lua, "checkpoint.begin", |lua, target: String| match store::begin(Path::new(&target)) {
        Ok(p) => Ok(MultiValue::from_iter([Value::String(lua.create_string(p.display().to_string())?)])),
        Err(e) => failure(lua, format!("checkpoint.begin: {e:#}")),
    })?)?;
    t.set("commit", function(lua, "checkpoint.commit", |lua, (tmp, target): (String, String)| match store::commit(Path::new(&tmp), Path::new(&target)) {
        Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
        Err(e) => failure(lua, format!("checkpoint.commit: {e:#}")),
    })?)?;
    // `manifest(dir)` → the checked checkpoint.json of a checkpoint, or nil and why it is unusable.
    t.set("manifest", function(lua, "checkpoint.manifest", |lua, dir: String| match store::check(Path::new(&dir)) {
        Ok(json) => Ok(MultiValue::from_iter([lua.to_value_with(&json, mlua::serde::ser::Options::new().serialize_none_to_null(false).serialize_unit_to_null(false))?])),
        Err(e) => failure(lua, format!("checkpoint.manifest: {e:#}")),
    })?)?;
    // `latest(run_dir)` → the newest checkpoint of a run directory, or nil and why there is none.
    t.set("latest", function(lua, "checkpoint.latest", |lua, run_dir: String| match store::latest(&store::root(Path::new(&run_dir))) {
        Ok(p) => Ok(MultiValue::from_iter([Value::String(lua.create_string(p.display().to_string())?)])),
        Err(e) => failure(lua, format!("checkpoint.latest: {e:#}")),
    })?)?;
    Ok(t)
}
