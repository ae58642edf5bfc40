//! Registering Rust functions and methods with Lua so that every argument mistake is an error
//! in moontune's words. mlua converts a callback's arguments itself and reports a mismatch in
//! Rust's ("bad argument #3 to `LuaTensor.narrow`: error converting Lua number to i64 (out of
//! range)"); here the arguments arrive as they are and are converted by `convert`, which
//! names the call, the argument and what was given instead ("tensor.narrow: argument 2:
//! expected an integer, got number 1.5"). Methods also say so when they are called with `.`
//! instead of `:` (no object to call them on).

use mlua::{AnyUserData, FromLuaMulti, IntoLuaMulti, Lua, MultiValue, UserData, UserDataMethods, Value};

use super::args::{describe, misuse};

/// Converts `args` to what a callback takes; a value that does not fit is an error naming the
/// call and the argument (counted from 1 after the object for methods).
pub fn convert<A: FromLuaMulti>(lua: &Lua, call: &str, args: MultiValue) -> mlua::Result<A> {
    let given = args.clone();
    A::from_lua_args(args, 1, None, lua).map_err(|e| explain(call, e, &given))
}

fn explain(call: &str, err: mlua::Error, given: &MultiValue) -> mlua::Error {
    let mlua::Error::BadArgument { pos, cause, .. } = &err else { return err };
    let value = given.get(pos - 1).cloned().unwrap_or(Value::Nil);
    let expected = match cause.as_ref() {
        mlua::Error::FromLuaConversionError { to, .. } => expected(to),
        mlua::Error::UserDataTypeMismatch => "another kind of object".to_string(),
        other => return misuse(call, format!("argument {pos}: {other}")),
    };
    // A list whose element does not fit (`encode_batch({ "a", {} })`): name the element.
    if let Value::Table(list) = &value {
        let bad = list.clone().sequence_values::<Value>().flatten().enumerate().find(|(_, v)| !fits(&expected, v));
        if let Some((i, v)) = bad {
            return misuse(call, format!("argument {pos}: element {} must be {expected}, got {}", i + 1, describe(&v)));
        }
    }
    misuse(call, format!("argument {pos}: expected {expected}, got {}", describe(&value)))
}

/// Whether `v` is of the scalar kind `expected` names (as mlua would convert it).
fn fits(expected: &str, v: &Value) -> bool {
    match expected {
        "an integer" => matches!(v, Value::Integer(_)) || matches!(v, Value::Number(n) if n.fract() == 0.0),
        "a number" => matches!(v, Value::Integer(_) | Value::Number(_)),
        "a string" => matches!(v, Value::String(_) | Value::Integer(_) | Value::Number(_)),
        "a boolean" => matches!(v, Value::Boolean(_)),
        _ => true,
    }
}

/// What a Rust type the conversion aimed at is, in a script's terms.
fn expected(rust_type: &str) -> String {
    let t = rust_type.trim_start_matches("std::string::").trim_start_matches("alloc::string::");
    match t {
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "String" | "LuaString" | "str" | "BString" => "a string".into(),
        "bool" => "a boolean".into(),
        "Table" | "LuaTable" => "a table".into(),
        "Function" | "LuaFunction" => "a function".into(),
        "AnyUserData" | "LuaAnyUserData" => "an object (a tensor, model, optimizer, …)".into(),
        t if t.starts_with("Vec<") => format!("a list of {}", plural(&expected(&t[4..t.len() - 1]))),
        t if t.starts_with("Option<") => expected(&t[7..t.len() - 1]),
        other => format!("a {other}"),
    }
}

fn plural(kind: &str) -> String {
    let noun = kind.trim_start_matches("an ").trim_start_matches("a ");
    format!("{noun}s")
}

/// A function for a module table (`mt.tensor.cat`), its arguments converted by `convert`.
pub fn function<A, R, F>(lua: &Lua, call: impl Into<String>, f: F) -> mlua::Result<mlua::Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + 'static,
{
    let call = call.into();
    lua.create_function(move |lua, args: MultiValue| f(lua, convert(lua, &call, args)?))
}

/// The object a method was called on, or an error saying how to call it.
fn receiver<T: UserData + 'static>(call: &str, args: &mut MultiValue) -> mlua::Result<AnyUserData> {
    match args.pop_front() {
        Some(Value::UserData(ud)) if ud.is::<T>() => Ok(ud),
        other => {
            let method = call.rsplit('.').next().unwrap_or(call);
            Err(misuse(call, format!("is a method: call it with ':' (x:{method}(...)), not '.'; it was called on {}", describe(&other.unwrap_or(Value::Nil)))))
        }
    }
}

/// A method reading its object (`x:sum()`).
pub fn method<T, M, A, R, F>(methods: &mut M, name: &str, call: impl Into<String>, f: F)
where
    T: UserData + 'static,
    M: UserDataMethods<T>,
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, &T, A) -> mlua::Result<R> + 'static,
{
    let call = call.into();
    methods.add_function(name, move |lua, mut args: MultiValue| {
        let ud = receiver::<T>(&call, &mut args)?;
        let this = ud.borrow::<T>()?;
        f(lua, &this, convert(lua, &call, args)?)
    });
}

/// A method changing its object (`opt:step()`).
pub fn method_mut<T, M, A, R, F>(methods: &mut M, name: &str, call: impl Into<String>, f: F)
where
    T: UserData + 'static,
    M: UserDataMethods<T>,
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, &mut T, A) -> mlua::Result<R> + 'static,
{
    let call = call.into();
    methods.add_function(name, move |lua, mut args: MultiValue| {
        let ud = receiver::<T>(&call, &mut args)?;
        let mut this = ud.borrow_mut::<T>()?;
        f(lua, &mut this, convert(lua, &call, args)?)
    });
}

/// A method that needs its object as a userdata handle (to return it, or to borrow it later).
pub fn method_ud<T, M, A, R, F>(methods: &mut M, name: &str, call: impl Into<String>, f: F)
where
    T: UserData + 'static,
    M: UserDataMethods<T>,
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, AnyUserData, A) -> mlua::Result<R> + 'static,
{
    let call = call.into();
    methods.add_function(name, move |lua, mut args: MultiValue| {
        let ud = receiver::<T>(&call, &mut args)?;
        f(lua, ud, convert(lua, &call, args)?)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_errors_name_the_call_argument_and_value() {
        let lua = Lua::new();
        let f = function(&lua, "demo.f", |_, (a, b): (i64, String)| Ok(format!("{a}{b}"))).unwrap();
        let err = f.call::<String>((1.5, "x")).unwrap_err().to_string();
        assert!(err.contains("demo.f: argument 1: expected an integer, got number 1.5"), "{err}");
        let err = f.call::<String>((1, Value::Nil)).unwrap_err().to_string();
        assert!(err.contains("demo.f: argument 2: expected a string, got nil"), "{err}");
        let g = function(&lua, "demo.g", |_, names: Vec<String>| Ok(names.len())).unwrap();
        let err = g.call::<usize>(5).unwrap_err().to_string();
        assert!(err.contains("demo.g: argument 1: expected a list of strings, got integer 5"), "{err}");
        let err = g.call::<usize>(vec![Value::Integer(1), Value::Boolean(true)]).unwrap_err().to_string();
        assert!(err.contains("demo.g: argument 1: element 2 must be a string, got boolean true"), "{err}");
        assert_eq!(f.call::<String>((2, "y")).unwrap(), "2y");
    }
}
