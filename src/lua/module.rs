//! The native module table (`require "moontune.core"`), which stdlib/moontune/init.lua extends
//! into what recipes get from `require "moontune"`.

use mlua::{Lua, Table, Value, Variadic};

use super::{gguf, models, nn, optim, sched, serialize, tensor_create, tokenizer};
use super::callbacks::{function};

/// Joins values as `print` does (tab-separated `tostring`s). Lua strings are bytes: any that are
/// not UTF-8 are shown with U+FFFD in their place rather than failing the print.
pub fn join_for_print(lua: &Lua, values: Variadic<Value>) -> mlua::Result<String> {
    let tostring: mlua::Function = lua.globals().get("tostring")?;
    let parts = values.into_iter().map(|v| Ok(tostring.call::<mlua::LuaString>(v)?.to_string_lossy())).collect::<mlua::Result<Vec<_>>>()?;
    Ok(parts.join("\t"))
}

/// Seeds libtorch's generators (CPU and CUDA) and Lua's `math.random` (`mt.manual_seed`, and the
/// run loop for `config.seed`).
pub fn seed_everything(lua: &Lua, seed: i64) -> mlua::Result<()> {
    tch::manual_seed(seed);
    let randomseed: mlua::Function = lua.globals().get::<Table>("math")?.get("randomseed")?;
    randomseed.call::<()>(seed)
}

fn device_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("cuda_available", function(lua, "device.cuda_available", |_, ()| Ok(tch::Cuda::is_available()))?)?;
    t.set("cuda_count", function(lua, "device.cuda_count", |_, ()| Ok(tch::Cuda::device_count()))?)?;
    t.set("best", function(lua, "device.best", |_, ()| Ok(if tch::Cuda::is_available() { "cuda" } else { "cpu" }))?)?;
    Ok(t)
}

pub fn create(lua: &Lua) -> mlua::Result<Table> {
    let mt = lua.create_table()?;
    mt.set("version", env!("CARGO_PKG_VERSION"))?;
    mt.set("tensor", tensor_create::create_table(lua)?)?;
    mt.set("nn", nn::create_table(lua)?)?;
    mt.set("optim", optim::create_table(lua)?)?;
    mt.set("sched", sched::create_table(lua)?)?;
    mt.set("device", device_table(lua)?)?;
    mt.set("models", models::create_table(lua)?)?;
    mt.set("tokenizer", tokenizer::create_table(lua)?)?;
    mt.set("gguf", gguf::create_table(lua)?)?;
    mt.set("peft", super::peft::create_table(lua)?)?;
    mt.set("json", super::json::create_table(lua)?)?;
    mt.set("metrics", super::metrics::create_table(lua)?)?;
    mt.set("data", super::data::create_table(lua)?)?;
    mt.set("checkpoint", super::checkpoint::create_table(lua)?)?;
    mt.set("dist", super::dist::create_table(lua)?)?;
    mt.set("save", function(lua, "save", serialize::save)?)?;
    mt.set("load", function(lua, "load", serialize::load)?)?;
    mt.set("no_grad", tensor_create::no_grad(lua)?)?;
    mt.set("enable_grad", tensor_create::enable_grad(lua)?)?;
    mt.set("inference_mode", tensor_create::inference_mode(lua)?)?;
    mt.set("autocast", tensor_create::autocast(lua)?)?;
    mt.set("manual_seed", function(lua, "mt.manual_seed", |lua, seed: i64| seed_everything(lua, seed))?)?;
    // Seconds on a monotonic clock (for timing inside recipes; os.clock is CPU time).
    let start = std::time::Instant::now();
    mt.set("clock", function(lua, "mt.clock", move |_, ()| Ok(start.elapsed().as_secs_f64()))?)?;
    mt.set("memory", function(lua, "mt.memory", |lua, ()| {
        let t = lua.create_table()?;
        t.set("tensor_bytes", super::memory::live_bytes())?;
        t.set("lua_bytes", lua.used_memory())?;
        Ok(t)
    })?)?;
    Ok(mt)
}
