//! `mt.dist`: the recipe's view of a data-parallel run (src/dist): its rank and world, the
//! collectives on tensors, and `data_parallel`, whose handle's `no_sync(fn)` keeps a backward's
//! gradients local. In a plain `moontune run` (a world of one) every call works and sends nothing.

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use serde::Deserialize;

use super::args::{describe, misuse, options, OrMisuse};
use super::callbacks::{function, method};
use super::models::parameters_of;
use super::tensor::{tensor_arg, wrap};
use crate::dist::data_parallel::{data_parallel, DataParallel};
use crate::dist::world::{self, Op};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReduceOptions {
    op: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BroadcastOptions {
    src: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DataParallelOptions {
    /// Bucket size in MiB (DDP's bucket_cap_mb).
    bucket_mb: Option<f64>,
    /// Allow backward passes that leave some parameters without a gradient.
    find_unused: Option<bool>,
}

fn op_of(call: &str, o: &ReduceOptions, default: Op) -> mlua::Result<Op> {
    o.op.as_deref().map(Op::parse).transpose().or_misuse(call).map(|op| op.unwrap_or(default))
}

struct LuaDataParallel(DataParallel);

impl UserData for LuaDataParallel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        method(methods, "no_sync", "data_parallel.no_sync", |_, this, f: Value| {
            let Value::Function(f) = f else { return Err(misuse("data_parallel.no_sync", format!("expected a function, got {}", describe(&f)))) };
            let was = this.0.set_sync(false);
            let result = f.call::<MultiValue>(());
            this.0.set_sync(was);
            result
        });
        method(methods, "params", "data_parallel.params", |_, this, ()| Ok(this.0.params));
        method(methods, "elements", "data_parallel.elements", |_, this, ()| Ok(this.0.elements));
        method(methods, "is_distributed", "data_parallel.is_distributed", |_, this, ()| Ok(this.0.is_distributed()));
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| Ok(format!("DataParallel({} parameters, {} values)", this.0.params, this.0.elements)));
    }
}

/// The trainable parameters of a model (or Lua module), or the tensors of a list.
fn trainable(call: &str, v: &Value) -> mlua::Result<Vec<tch::Tensor>> {
    if let Value::Table(list) = v {
        if list.raw_len() > 0 {
            return list.sequence_values::<Value>().map(|p| tensor_arg(call, &p?)).collect();
        }
    }
    match parameters_of(v) {
        Some(params) => Ok(params.into_iter().map(|p| p.tensor).filter(tch::Tensor::requires_grad).collect()),
        None => Err(misuse(call, format!("expected a model or a list of parameters, got {}", describe(v)))),
    }
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("rank", function(lua, "mt.dist.rank", |_, ()| Ok(world::place().or_misuse("mt.dist.rank")?.rank))?)?;
    t.set("world_size", function(lua, "mt.dist.world_size", |_, ()| Ok(world::place().or_misuse("mt.dist.world_size")?.size))?)?;
    t.set("local_rank", function(lua, "mt.dist.local_rank", |_, ()| Ok(world::place().or_misuse("mt.dist.local_rank")?.local_rank))?)?;
    t.set("is_main", function(lua, "mt.dist.is_main", |_, ()| Ok(world::place().or_misuse("mt.dist.is_main")?.rank == 0))?)?;
    t.set("barrier", function(lua, "mt.dist.barrier", |_, ()| world::barrier().or_misuse("mt.dist.barrier"))?)?;
    t.set("all_reduce", function(lua, "mt.dist.all_reduce", |lua, (v, opts): (Value, Option<Table>)| {
        let call = "mt.dist.all_reduce";
        let tensor = tensor_arg(call, &v)?;
        let op = op_of(call, &options::<ReduceOptions>(lua, call, opts)?, Op::Sum)?;
        world::all_reduce(&tensor, op).or_misuse(call)?;
        Ok(v)
    })?)?;
    t.set("broadcast", function(lua, "mt.dist.broadcast", |lua, (v, opts): (Value, Option<Table>)| {
        let call = "mt.dist.broadcast";
        let tensor = tensor_arg(call, &v)?;
        let o: BroadcastOptions = options(lua, call, opts)?;
        world::broadcast(&tensor, o.src.unwrap_or(0)).or_misuse(call)?;
        Ok(v)
    })?)?;
    t.set("all_gather", function(lua, "mt.dist.all_gather", |lua, v: Value| {
        let call = "mt.dist.all_gather";
        wrap(lua, world::all_gather(&tensor_arg(call, &v)?).or_misuse(call)?)
    })?)?;
    t.set("reduce_scatter", function(lua, "mt.dist.reduce_scatter", |lua, (v, opts): (Value, Option<Table>)| {
        let call = "mt.dist.reduce_scatter";
        let tensor = tensor_arg(call, &v)?;
        let op = op_of(call, &options::<ReduceOptions>(lua, call, opts)?, Op::Sum)?;
        wrap(lua, world::reduce_scatter(&tensor, op).or_misuse(call)?)
    })?)?;
    t.set("data_parallel", function(lua, "mt.dist.data_parallel", |lua, (v, opts): (Value, Option<Table>)| {
        let call = "mt.dist.data_parallel";
        let params = trainable(call, &v)?;
        let o: DataParallelOptions = options(lua, call, opts)?;
        let bucket_mb = o.bucket_mb.unwrap_or(25.0);
        if !(bucket_mb > 0.0 && bucket_mb.is_finite()) {
            return Err(misuse(call, format!("bucket_mb must be a positive number, got {bucket_mb}")));
        }
        let dp = data_parallel(&params, (bucket_mb * 1024.0 * 1024.0) as i64, o.find_unused.unwrap_or(false)).or_misuse(call)?;
        Ok(LuaDataParallel(dp))
    })?)?;
    Ok(t)
}
