//! `mt.save(path, tensors)` and `mt.load(path)`: a flat table of named tensors in safetensors,
//! written atomically. A missing or unreadable file is an environmental failure: `nil, message`.

use std::collections::BTreeMap;
use std::path::Path;

use mlua::{Lua, MultiValue, Table, Value};
use serde::Deserialize;

use super::args::{describe, failure, misuse, options, text, OrMisuse};
use super::tensor::{tensor_arg, wrap};
use crate::io::{load_safetensors, save_safetensors};
use crate::tensor::parse_device;

/// `mt.save(path, { name = tensor, ... })` → true, or nil and a message if the file cannot be written.
pub fn save(lua: &Lua, (path, tensors): (String, Table)) -> mlua::Result<MultiValue> {
    let call = "save";
    let mut map = BTreeMap::new();
    for pair in tensors.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(name) = &k else {
            return Err(misuse(call, format!("tensor names must be strings, got {}", describe(&k))));
        };
        let name_text = text(call, "a tensor name", name)?;
        crate::io::safetensors::check_name(&name_text).or_misuse(call)?;
        map.insert(name_text, tensor_arg(&format!("save: '{}'", name.to_string_lossy()), &v)?);
    }
    match save_safetensors(Path::new(&path), &map, None) {
        Ok(()) => Ok(MultiValue::from_iter([Value::Boolean(true)])),
        Err(e) => failure(lua, format!("save: {e:#}")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadOptions {
    /// Where to put the tensors (default "cpu").
    device: Option<String>,
}

/// `mt.load(path, { device = "cuda" }?)` → a table of tensors, or nil and a message.
pub fn load(lua: &Lua, (path, opts): (String, Option<Table>)) -> mlua::Result<MultiValue> {
    let call = "load";
    let o: LoadOptions = options(lua, call, opts)?;
    let device = o.device.as_deref().map(parse_device).transpose().or_misuse(call)?.unwrap_or(tch::Device::Cpu);
    match load_safetensors(Path::new(&path), device) {
        Ok(map) => {
            let t = lua.create_table()?;
            for (name, tensor) in map {
                t.set(name, wrap(lua, tensor)?)?;
            }
            Ok(MultiValue::from_iter([Value::Table(t)]))
        }
        Err(e) => failure(lua, format!("load: {e:#}")),
    }
}
