//! `mt.json`: JSON text to Lua values and back (objects are tables with string keys, arrays are
//! sequences, null is nil), for recipes that read data or configs written as JSON. A malformed
//! text is `nil, message` naming the line and column.

use mlua::{Lua, LuaSerdeExt, MultiValue, Table, Value};

use super::args::{failure, misuse};
use super::callbacks::function;

fn decode(lua: &Lua, text: mlua::LuaString) -> mlua::Result<MultiValue> {
    match serde_json::from_slice::<serde_json::Value>(&text.as_bytes()) {
        Ok(v) => Ok(MultiValue::from_iter([lua.to_value_with(&v, mlua::serde::ser::Options::new().serialize_none_to_null(false).serialize_unit_to_null(false))?])),
        Err(e) => failure(lua, format!("json.decode: {e}")),
    }
}

fn read(lua: &Lua, path: String) -> mlua::Result<MultiValue> {
    match std::fs::read(&path) {
        Ok(bytes) => decode(lua, lua.create_string(&bytes)?),
        Err(e) => failure(lua, format!("json.read: cannot read {path}: {e}")),
    }
}

fn encode(lua: &Lua, v: Value) -> mlua::Result<String> {
    let json: serde_json::Value = lua.from_value(v).map_err(|e| misuse("json.encode", e))?;
    serde_json::to_string(&json).map_err(|e| misuse("json.encode", e))
}

pub fn create_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("decode", function(lua, "json.decode", decode)?)?;
    t.set("read", function(lua, "json.read", read)?)?;
    t.set("encode", function(lua, "json.encode", encode)?)?;
    Ok(t)
}
