//! Dataset examples between Lua and the core: records are tables with named fields, lists are
//! sequences, tensors stay tensors; and the recipe's `map` and `filter` functions as the core's
//! `Transform` and `Predicate`, called with each example and naming it when they fail.

use mlua::{Function, Lua, Value as Lua_, WeakLua};

use super::args::{describe, misuse, text};
use super::tensor::{as_tensor, wrap};
use crate::data::dataset::{Predicate, Transform};
use crate::data::value::{Record, Value};

/// How deep examples may nest (a table that contains itself stops here).
const MAX_DEPTH: usize = 64;

pub fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<Lua_> {
    Ok(match v {
        Value::Null => Lua_::Nil,
        Value::Bool(b) => Lua_::Boolean(*b),
        Value::Int(i) => Lua_::Integer(*i),
        Value::Float(x) => Lua_::Number(*x),
        Value::Str(s) => Lua_::String(lua.create_string(s)?),
        Value::List(l) => {
            let t = lua.create_table_with_capacity(l.len(), 0)?;
            for (i, item) in l.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Lua_::Table(t)
        }
        Value::Record(r) => {
            let t = lua.create_table_with_capacity(0, r.0.len())?;
            for (k, item) in &r.0 {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            Lua_::Table(t)
        }
        Value::Tensor(t) => Lua_::UserData(lua.create_userdata(wrap(lua, t.shallow_clone())?)?),
    })
}

/// A Lua value as an example; `what` names it in errors. Tables with keys 1..n are lists, other
/// tables records (their fields in name order, as Lua keeps no order).
pub fn from_lua(call: &str, what: &str, v: &Lua_) -> mlua::Result<Value> {
    convert(call, what, v, 0)
}

fn convert(call: &str, what: &str, v: &Lua_, depth: usize) -> mlua::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(misuse(call, format!("{what} nests more than {MAX_DEPTH} tables deep (does a table contain itself?)")));
    }
    Ok(match v {
        Lua_::Nil => Value::Null,
        Lua_::Boolean(b) => Value::Bool(*b),
        Lua_::Integer(i) => Value::Int(*i),
        Lua_::Number(x) => Value::Float(*x),
        Lua_::String(s) => Value::Str(text(call, what, s)?),
        Lua_::Table(t) => {
            let n = t.raw_len();
            let count = t.pairs::<Lua_, Lua_>().count();
            if n > 0 && n == count {
                let items = (1..=n).map(|i| convert(call, &format!("{what}[{i}]"), &t.raw_get::<Lua_>(i)?, depth + 1)).collect::<mlua::Result<_>>()?;
                Value::List(items)
            } else {
                let mut fields = Vec::with_capacity(count);
                for pair in t.pairs::<Lua_, Lua_>() {
                    let (key, item) = pair?;
                    let Lua_::String(key) = key else {
                        return Err(misuse(call, format!("{what}: field names must be strings, got {} (a table mixes a list and named fields?)", describe(&key))));
                    };
                    let key = text(call, what, &key)?;
                    let item = convert(call, &format!("{what}.{key}"), &item, depth + 1)?;
                    fields.push((key, item));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Record(Record(fields))
            }
        }
        other => match as_tensor(other) {
            Some(t) => Value::Tensor(t),
            None => return Err(misuse(call, format!("{what}: an example holds numbers, strings, booleans, tensors and tables of them, not {}", describe(other)))),
        },
    })
}

/// A recipe's function over examples: `map` (the new example) or `filter` (keep it?).
pub struct LuaCallback {
    pub f: Function,
    pub lua: WeakLua,
    /// The dataset call that took it (`data.map`), for messages.
    pub call: &'static str,
}

impl LuaCallback {
    fn call_on(&self, ex: &Value, index: u64) -> anyhow::Result<Lua_> {
        let lua = self.lua.try_upgrade().ok_or_else(|| anyhow::anyhow!("{}: the Lua state is gone", self.call))?;
        let arg = to_lua(&lua, ex)?;
        self.f.call::<Lua_>(arg).map_err(|e| anyhow::anyhow!("{}: the function failed on example {}: {e}", self.call, index + 1))
    }
}

impl Transform for LuaCallback {
    fn apply(&self, examples: Vec<Value>, first: u64) -> anyhow::Result<Vec<Value>> {
        examples
            .iter()
            .enumerate()
            .map(|(k, ex)| {
                let index = first + k as u64;
                match self.call_on(ex, index)? {
                    Lua_::Nil => Err(anyhow::anyhow!("{}: the function returned nil for example {} (return the new example; drop examples with filter)", self.call, index + 1)),
                    out => Ok(from_lua(self.call, &format!("the result for example {}", index + 1), &out)?),
                }
            })
            .collect()
    }
}

impl Predicate for LuaCallback {
    fn keep(&self, ex: &Value, index: u64) -> anyhow::Result<bool> {
        Ok(!matches!(self.call_on(ex, index)?, Lua_::Nil | Lua_::Boolean(false)))
    }
}
