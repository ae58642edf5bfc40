//! `mt.gguf`: looking inside llama.cpp's files — `read(path)` (version, alignment, metadata and
//! tensor infos) and `tensors(path[, names])` (tensors de-quantised to float32 under the file's
//! own names and shapes). Loading a model or tokenizer from a GGUF is `mt.models.load` and
//! `mt.tokenizer.load`; writing one is `model:save_gguf`.

use std::path::Path;

use mlua::{Lua, MultiValue, Table, Value};

use super::args::failure;
use super::callbacks::function;
use super::tensor::wrap;
use crate::gguf::load::dequantized;
use crate::gguf::{Gguf, Value as Meta};

fn meta_value(lua: &Lua, v: &Meta) -> mlua::Result<Value> {
    Ok(match v {
        Meta::F32(x) => Value::Number(*x as f64),
        Meta::F64(x) => Value::Number(*x),
        Meta::U64(x) if *x > i64::MAX as u64 => Value::Number(*x as f64),
        Meta::Bool(b) => Value::Boolean(*b),
        Meta::Str(s) => Value::String(lua.create_string(s)?),
        Meta::Array(items) => Value::Table(lua.create_sequence_from(items.iter().map(|i| meta_value(lua, i)).collect::<mlua::Result<Vec<_>>>()?)?),
        other => Value::Integer(other.as_i64().unwrap_or_default()),
    })
}

fn read(lua: &Lua, g: &Gguf) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("version", g.version)?;
    t.set("alignment", g.alignment)?;
    let meta = lua.create_table()?;
    for (k, v) in &g.metadata {
        meta.set(k.as_str(), meta_value(lua, v)?)?;
    }
    t.set("metadata", meta)?;
    let infos = lua.create_table()?;
    for info in &g.tensors {
        let i = lua.create_table()?;
        i.set("name", info.name.as_str())?;
        i.set("type", info.ggml_type.name())?;
        i.set("shape", info.shape())?;
        i.set("offset", info.offset)?;
        i.set("nbytes", info.nbytes)?;
        infos.push(i)?;
    }
    t.set("tensors", infos)?;
    Ok(t)
}

fn tensors(lua: &Lua, g: &Gguf, names: Option<Vec<String>>) -> anyhow::Result<Table> {
    let out = lua.create_table()?;
    if let Some(names) = &names {
        if let Some(missing) = names.iter().find(|n| g.tensor(n).is_none()) {
            anyhow::bail!("the file has no tensor '{missing}'");
        }
    }
    for info in g.tensors.iter().filter(|i| names.as_ref().is_none_or(|n| n.contains(&i.name))) {
        out.set(info.name.as_str(), wrap(lua, dequantized(g, info)?)?)?;
    }
    Ok(out)
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("read", function(lua, "gguf.read", |lua, path: String| match Gguf::open(Path::new(&path)) {
        Ok(g) => Ok(MultiValue::from_iter([Value::Table(read(lua, &g)?)])),
        Err(e) => failure(lua, format!("gguf.read: {e:#}")),
    })?)?;
    t.set("tensors", function(lua, "gguf.tensors", |lua, (path, names): (String, Option<Vec<String>>)| {
        match Gguf::open(Path::new(&path)).and_then(|g| tensors(lua, &g, names)) {
            Ok(t) => Ok(MultiValue::from_iter([Value::Table(t)])),
            Err(e) => failure(lua, format!("gguf.tensors: {e:#}")),
        }
    })?)?;
    Ok(t)
}
