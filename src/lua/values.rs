//! Lua values ⇄ tensor data: nested sequences to a tensor (`mt.tensor.tensor{{1, 2}, {3, 4}}`),
//! and back (`t:tolist()`, `t:item()`) as plain 1-based Lua tables and numbers.

use mlua::{Lua, Table, Value};
use tch::{Device, Kind, Tensor};

use super::args::{describe, misuse, OrMisuse};
use crate::tensor::create::{from_flat, FlatData};
use crate::tensor::dtype::is_floating;

/// libtorch's limit on a tensor's dims.
const MAX_DIMS: usize = 64;

#[derive(Default)]
struct Gathered {
    ints: Vec<i64>,
    floats: Vec<f64>,
    bools: Vec<bool>,
    any_float: bool,
}

fn gather(call: &str, v: &Value, depth: usize, shape: &mut Vec<i64>, out: &mut Gathered) -> mlua::Result<()> {
    match v {
        Value::Table(_) if depth >= MAX_DIMS => {
            Err(misuse(call, format!("tensor data nests more than {MAX_DIMS} tables deep (a tensor has at most {MAX_DIMS} dims; does a table contain itself?)")))
        }
        Value::Table(t) => {
            let items: Vec<Value> = t.sequence_values::<Value>().collect::<mlua::Result<_>>()?;
            if items.len() != t.pairs::<Value, Value>().count() {
                return Err(misuse(call, "tensor data must be sequences (no keys other than 1..n)"));
            }
            if shape.len() == depth {
                shape.push(items.len() as i64);
            } else if shape.get(depth) != Some(&(items.len() as i64)) {
                return Err(misuse(call, format!("ragged data: expected {} elements at depth {}, found {}", shape.get(depth).copied().unwrap_or(0), depth + 1, items.len())));
            }
            for item in &items {
                gather(call, item, depth + 1, shape, out)?;
            }
            Ok(())
        }
        scalar => {
            if shape.len() != depth {
                return Err(misuse(call, format!("ragged data: found {} where a sequence was expected", describe(scalar))));
            }
            match scalar {
                Value::Integer(i) => {
                    out.ints.push(*i);
                    out.floats.push(*i as f64);
                }
                Value::Number(n) => {
                    out.any_float = true;
                    out.ints.push(*n as i64);
                    out.floats.push(*n);
                }
                Value::Boolean(b) => out.bools.push(*b),
                other => return Err(misuse(call, format!("tensor data must be numbers or booleans, found {}", describe(other)))),
            }
            Ok(())
        }
    }
}

/// A tensor from a number, a boolean or nested sequences of them: integers give int64, any
/// float makes the whole tensor float32, booleans give bool (as `torch.tensor`).
pub fn tensor_from_value(call: &str, v: &Value) -> mlua::Result<Tensor> {
    let mut shape = Vec::new();
    let mut g = Gathered::default();
    gather(call, v, 0, &mut shape, &mut g)?;
    if !g.bools.is_empty() && !g.floats.is_empty() {
        return Err(misuse(call, "tensor data mixes booleans and numbers"));
    }
    let data = if !g.bools.is_empty() {
        FlatData::Bool(g.bools)
    } else if g.any_float {
        FlatData::Float(g.floats.iter().map(|f| *f as f32).collect())
    } else if g.ints.is_empty() && !shape.is_empty() {
        FlatData::Float(Vec::new())
    } else {
        FlatData::Int(g.ints)
    };
    from_flat(data, &shape).or_misuse(call)
}

fn scalar_value(kind: Kind, t: &Tensor, index: &[i64]) -> mlua::Result<Value> {
    if kind == Kind::Bool {
        Ok(Value::Boolean(t.f_int64_value(index).or_misuse("tensor.tolist")? != 0))
    } else if is_floating(kind) {
        Ok(Value::Number(t.f_double_value(index).or_misuse("tensor.tolist")?))
    } else {
        Ok(Value::Integer(t.f_int64_value(index).or_misuse("tensor.tolist")?))
    }
}

/// The single value of a one-element tensor, as a Lua integer, number or boolean.
pub fn tensor_item(_lua: &Lua, t: &Tensor) -> mlua::Result<Value> {
    if t.numel() != 1 {
        return Err(misuse("tensor.item", format!("a tensor with {} elements cannot be converted to a number (shape {:?})", t.numel(), t.size())));
    }
    let kind = t.f_kind().or_misuse("tensor.item")?;
    let flat = t.f_reshape([1]).or_misuse("tensor.item")?.f_to_device(Device::Cpu).or_misuse("tensor.item")?;
    scalar_value(kind, &flat, &[0])
}

/// The tensor as nested 1-based Lua tables (a plain value for a 0-dim tensor).
pub fn tensor_to_list(lua: &Lua, t: &Tensor) -> mlua::Result<Value> {
    let kind = t.f_kind().or_misuse("tensor.tolist")?;
    let host = t.f_detach().and_then(|d| d.f_to_device(Device::Cpu)).and_then(|d| d.f_contiguous()).or_misuse("tensor.tolist")?;
    let size = host.size();
    if size.is_empty() {
        return scalar_value(kind, &host, &[]);
    }
    let flat = host.f_reshape([-1]).or_misuse("tensor.tolist")?;
    let values: Vec<Value> = if kind == Kind::Bool {
        Vec::<bool>::try_from(&flat).or_misuse("tensor.tolist")?.into_iter().map(Value::Boolean).collect()
    } else if is_floating(kind) {
        let doubles = flat.f_to_kind(Kind::Double).or_misuse("tensor.tolist")?;
        Vec::<f64>::try_from(&doubles).or_misuse("tensor.tolist")?.into_iter().map(Value::Number).collect()
    } else {
        let longs = flat.f_to_kind(Kind::Int64).or_misuse("tensor.tolist")?;
        Vec::<i64>::try_from(&longs).or_misuse("tensor.tolist")?.into_iter().map(Value::Integer).collect()
    };
    let mut position = 0;
    nest(lua, &size, &values, &mut position).map(Value::Table)
}

fn nest(lua: &Lua, size: &[i64], values: &[Value], position: &mut usize) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(size[0] as usize, 0)?;
    for _ in 0..size[0] {
        if size.len() == 1 {
            table.raw_push(values[*position].clone())?;
            *position += 1;
        } else {
            table.raw_push(nest(lua, &size[1..], values, position)?)?;
        }
    }
    Ok(table)
}
