//! `math.random` and `math.randomseed` for recipes, on a generator moontune can save and restore
//! (src/checkpoint/xoshiro.rs) — Lua's own keeps its state out of reach — and
//! `mt.checkpoint`'s access to that state.

use std::cell::RefCell;

use mlua::{Lua, MultiValue, Table, Value};

use super::args::{describe, misuse};
use super::callbacks::function;
use crate::checkpoint::xoshiro::Xoshiro;

struct LuaRandom(RefCell<Xoshiro>);

fn with<T>(lua: &Lua, f: impl FnOnce(&mut Xoshiro) -> T) -> mlua::Result<T> {
    let r = lua.app_data_ref::<LuaRandom>().ok_or_else(|| mlua::Error::runtime("math.random is not installed"))?;
    let mut x = r.0.borrow_mut();
    Ok(f(&mut x))
}

fn int_arg(call: &str, i: usize, v: &Value) -> mlua::Result<i64> {
    match v {
        Value::Integer(n) => Ok(*n),
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Ok(*x as i64),
        other => Err(misuse(call, format!("argument {i}: expected an integer, got {}", describe(other)))),
    }
}

fn random(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let call = "math.random";
    let args: Vec<Value> = args.into_iter().collect();
    let (low, up) = match args.len() {
        0 => return with(lua, |x| Value::Number(x.float())),
        1 => {
            let m = int_arg(call, 1, &args[0])?;
            if m == 0 {
                return with(lua, |x| Value::Integer(x.next() as i64));
            }
            (1, m)
        }
        2 => (int_arg(call, 1, &args[0])?, int_arg(call, 2, &args[1])?),
        n => return Err(misuse(call, format!("takes at most 2 arguments, got {n}"))),
    };
    if low > up {
        return Err(misuse(call, format!("the interval [{low}, {up}] is empty")));
    }
    with(lua, |x| Value::Integer(x.between(low, up)))
}

fn randomseed(lua: &Lua, args: MultiValue) -> mlua::Result<(i64, i64)> {
    let call = "math.randomseed";
    let args: Vec<Value> = args.into_iter().collect();
    let (n1, n2) = match args.as_slice() {
        [] => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
            (t, std::process::id() as i64)
        }
        [a] => (int_arg(call, 1, a)?, 0),
        [a, b, ..] => (int_arg(call, 1, a)?, int_arg(call, 2, b)?),
    };
    with(lua, |x| *x = Xoshiro::seeded(n1 as u64, n2 as u64))?;
    Ok((n1, n2))
}

/// Replaces `math.random` and `math.randomseed`, seeded from the clock as Lua's are.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    lua.set_app_data(LuaRandom(RefCell::new(Xoshiro::seeded(t, std::process::id() as u64))));
    let math: Table = lua.globals().get("math")?;
    math.set("random", function(lua, "math.random", random)?)?;
    math.set("randomseed", function(lua, "math.randomseed", randomseed)?)?;
    Ok(())
}

/// The generator's state, four integers (the bits of its four 64-bit words).
pub fn state(lua: &Lua) -> mlua::Result<[i64; 4]> {
    with(lua, |x| x.0.map(|w| w as i64))
}

pub fn set_state(lua: &Lua, words: [i64; 4]) -> mlua::Result<()> {
    with(lua, |x| x.0 = words.map(|w| w as u64))
}
