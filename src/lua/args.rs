//! Conversions shared by the bindings: Lua errors that name the call, option tables read with
//! serde (unknown keys rejected), shapes and dims given as numbers or sequences.

use std::fmt::Display;

use mlua::{Lua, MultiValue, Table, Value};
use serde::de::DeserializeOwned;

/// A Lua error for a misuse of `call`: `"call: what was wrong"` (shown as it is, without the
/// "runtime error: " mlua would put before it).
pub fn misuse(call: &str, err: impl Display) -> mlua::Error {
    mlua::Error::external(Misuse(format!("{call}: {}", concise(&format!("{err:#}")))))
}

#[derive(Debug)]
struct Misuse(String);

impl Display for Misuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Misuse {}

/// A message with any libtorch C++ backtrace cut off, and a panic that carries a libtorch error
/// (tch unwraps some errors internally) reduced to that error. Keeps a Lua traceback if present.
pub fn tidy(message: &str) -> String {
    if !message.contains("Torch(\"") {
        return message.to_string();
    }
    let traceback = message.find("\nstack traceback:").map(|j| &message[j..]).unwrap_or("");
    format!("libtorch error: {}{traceback}", crate::tensor::guard::torch_message(message))
}

/// libtorch messages carry a C++ backtrace after the first lines ("Exception raised from …" or
/// "frame #0: …") and sometimes the failed check's source location first ("[enforce fail at
/// alloc_cpu.cpp:127] err == 0. "); keep what a user can act on.
fn concise(message: &str) -> String {
    let cut = ["\nException raised from", "\nframe #"].iter().filter_map(|m| message.find(m)).min().unwrap_or(message.len());
    let text = message[..cut].trim();
    let text = text.strip_prefix("Internal torch error: ").unwrap_or(text);
    let text = match text.strip_prefix("[enforce fail at ") {
        Some(rest) => rest.split_once("] ").and_then(|(_, check)| check.split_once(". ")).map(|(_, message)| message).unwrap_or(text),
        None => text,
    };
    out_of_memory(text).unwrap_or_else(|| text.to_string())
}

/// libtorch's allocation failures in a person's terms: "out of memory: tried to allocate 3.6
/// TiB" for the CPU allocator's "can't allocate memory: you tried to allocate 4000000000000
/// bytes. Error code 12 (…)", and CUDA's first sentences kept behind "out of memory on the GPU".
fn out_of_memory(text: &str) -> Option<String> {
    if let Some(rest) = text.split_once("you tried to allocate ").map(|(_, r)| r) {
        let bytes: u64 = rest.split_whitespace().next()?.parse().ok()?;
        return Some(format!("out of memory: tried to allocate {}", crate::tensor::headroom::human(bytes)));
    }
    let cuda = text.find("CUDA out of memory")?;
    let detail = &text[cuda + "CUDA out of memory".len()..];
    let detail = detail.trim_start_matches('.').trim();
    let first = detail.split_inclusive(". ").take(2).collect::<String>();
    Some(format!("out of memory on the GPU: {}", first.trim()))
}

/// Turns any error into a Lua error naming the call.
pub trait OrMisuse<T> {
    fn or_misuse(self, call: &str) -> mlua::Result<T>;
}

impl<T, E: Display> OrMisuse<T> for Result<T, E> {
    fn or_misuse(self, call: &str) -> mlua::Result<T> {
        self.map_err(|e| misuse(call, e))
    }
}

/// An environmental failure as Lua sees it: `nil, message`.
pub fn failure(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_iter([Value::Nil, Value::String(lua.create_string(message)?)]))
}

/// Reads an options table into `T` (declared with `deny_unknown_fields`); `nil` gives defaults.
/// A mistake names the option: "unknown option 'lrr' (accepted: lr, betas, …)", "option 'lr':
/// invalid type: string \"fast\", expected f64".
pub fn options<T: DeserializeOwned + Default>(lua: &Lua, call: &str, table: Option<Table>) -> mlua::Result<T> {
    options_accepting(lua, call, table, &[])
}

/// `options`, for a call that also takes `extra` keys that it reads itself (they are listed
/// among the accepted ones in messages).
pub fn options_accepting<T: DeserializeOwned + Default>(_lua: &Lua, call: &str, table: Option<Table>, extra: &[&str]) -> mlua::Result<T> {
    match table {
        Some(table) => required_options(call, table, extra),
        None => Ok(T::default()),
    }
}

/// An options table that must be given (it has required keys); a sequence where named options
/// belong is an error that says so.
pub fn required_options<T: DeserializeOwned>(call: &str, table: Table, extra: &[&str]) -> mlua::Result<T> {
    if table.raw_len() > 0 {
        return Err(misuse(call, "expected a table of named options ({ name = value, ... }), got a list"));
    }
    check_nesting(call, "the options", &Value::Table(table.clone()))?;
    serde_path_to_error::deserialize(mlua::serde::Deserializer::new(Value::Table(table))).map_err(|e| misuse(call, option_error(&e.path().to_string(), &e.into_inner().to_string(), extra)))
}

/// Splits an options table into a copy without `keys` (for serde) and the values under `keys`,
/// in order (nil where absent): options that are Lua values (tensors, functions, tokenizers)
/// rather than settings. The caller's table is left as it was.
pub fn split_values(lua: &Lua, table: Option<Table>, keys: &[&str]) -> mlua::Result<(Option<Table>, Vec<Value>)> {
    let mut values = vec![Value::Nil; keys.len()];
    let Some(table) = table else { return Ok((None, values)) };
    let settings = lua.create_table()?;
    for pair in table.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let at = match &k {
            Value::String(s) => keys.iter().position(|key| s == key),
            _ => None,
        };
        match at {
            Some(i) => values[i] = v,
            None => settings.raw_set(k, v)?,
        }
    }
    Ok((Some(settings), values))
}

/// An option-reading error as a user reads it.
fn option_error(path: &str, inner: &str, extra: &[&str]) -> String {
    let inner = inner.strip_prefix("deserialize error: ").unwrap_or(inner);
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let (name, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let mut accepted: Vec<String> = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
        accepted.extend(extra.iter().map(|s| s.to_string()));
        // The path already ends in the unknown key where the error knows its place.
        let name = if path == "." || path.is_empty() { name } else { path };
        return format!("unknown option '{name}' (accepted: {})", accepted.join(", "));
    }
    if let Some(name) = inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        return format!("missing option '{name}'");
    }
    let inner = crate::io::plain_words(inner);
    if path == "." || path.is_empty() {
        format!("bad options: {inner}")
    } else {
        format!("option '{path}': {inner}")
    }
}

/// Reads a list of integers given either as leading numbers (`zeros(2, 3)`) or as one sequence
/// (`zeros{2, 3}`); returns them and the remaining arguments. A sequence with named keys is an
/// error here (see `sizes_and_options` for calls that take options inside it).
pub fn int_list(call: &str, args: MultiValue) -> mlua::Result<(Vec<i64>, Vec<Value>)> {
    let mut args: Vec<Value> = args.into_iter().collect();
    let mut list = Vec::new();
    if let Some(Value::Table(t)) = args.first() {
        if t.raw_len() > 0 || t.is_empty() {
            if t.pairs::<Value, Value>().count() != t.raw_len() {
                return Err(misuse(call, "a size table holds sizes only (1..n); other keys are not allowed here"));
            }
            for v in t.sequence_values::<Value>() {
                list.push(integer(call, &v?)?);
            }
            args.remove(0);
            return Ok((list, args));
        }
    }
    while let Some(v) = args.first() {
        match v {
            Value::Integer(_) | Value::Number(_) => {
                list.push(integer(call, v)?);
                args.remove(0);
            }
            _ => break,
        }
    }
    Ok((list, args))
}

/// Sizes as `int_list` reads them, for constructors that also take options: named keys in the
/// size table (`randn{ 3, 4, requires_grad = true }`) are options, as is a trailing table
/// (`randn({ 3, 4 }, { requires_grad = true })`); giving both is an error.
pub fn sizes_and_options(lua: &Lua, call: &str, args: MultiValue) -> mlua::Result<(Vec<i64>, Option<Table>, Vec<Value>)> {
    let mut args: Vec<Value> = args.into_iter().collect();
    let mut inline = None;
    if let Some(Value::Table(t)) = args.first() {
        let n = t.raw_len() as i64;
        let named = lua.create_table()?;
        let mut sizes = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            match k {
                Value::Integer(i) if i >= 1 && i <= n => sizes.push((i, v)),
                other => named.raw_set(other, v)?,
            }
        }
        if !named.is_empty() {
            sizes.sort_by_key(|(i, _)| *i);
            let seq = lua.create_sequence_from(sizes.into_iter().map(|(_, v)| v))?;
            args[0] = Value::Table(seq);
            inline = Some(named);
        }
    }
    let (sizes, mut rest) = int_list(call, MultiValue::from_iter(args))?;
    let trailing = trailing_options(&mut rest);
    let options = match (inline, trailing) {
        (Some(_), Some(_)) => return Err(misuse(call, "options are given both in the size table and after it; give them once")),
        (a, b) => a.or(b),
    };
    Ok((sizes, options, rest))
}

/// A Lua number that must be an integer (a dim, a size, an index).
pub fn integer(call: &str, v: &Value) -> mlua::Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Number(n) if n.fract() == 0.0 && n.is_finite() => Ok(*n as i64),
        other => Err(misuse(call, format!("expected an integer, got {}", describe(other)))),
    }
}

/// A short description of a Lua value for error messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Number(n) => format!("number {}", number(*n)),
        Value::String(s) => format!("string {}", quoted(&s.to_string_lossy())),
        Value::Table(_) => "a table".into(),
        Value::Function(_) => "a function".into(),
        // Each userdata type names itself in its metatable (`tensor`, `model`, `optimizer`…).
        Value::UserData(ud) => match ud.type_name() {
            Ok(name) => format!("a {}", name.to_string_lossy()),
            Err(_) => "a userdata".into(),
        },
        other => other.type_name().to_string(),
    }
}

/// A number shown short: `-1e300` in exponent form, not three hundred digits.
fn number(n: f64) -> String {
    if n.is_nan() {
        return "nan".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let magnitude = n.abs();
    if magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
        format!("{n:e}")
    } else {
        format!("{n}")
    }
}

/// A string for a message: quoted, and cut to its first 40 characters when longer (with its
/// length), so that a megabyte of text does not become the message.
fn quoted(s: &str) -> String {
    let count = s.chars().count();
    if count <= 40 {
        return format!("'{s}'");
    }
    format!("'{}…' ({count} characters)", s.chars().take(40).collect::<String>())
}

/// A Lua string that must be text: bytes that are not UTF-8 are an error naming `what` and
/// showing the string (invalid bytes as U+FFFD).
pub fn text(call: &str, what: &str, s: &mlua::LuaString) -> mlua::Result<String> {
    match s.to_str() {
        Ok(t) => Ok(t.to_string()),
        Err(_) => Err(misuse(call, format!("{what} must be UTF-8 text, got {:?}", s.to_string_lossy()))),
    }
}

/// How deep a table handed to moontune may nest (configs, chat messages, options): far beyond
/// any real one, and shallow enough that walking it cannot exhaust the stack.
pub const MAX_NESTING: usize = 100;

/// Checks that a table does not contain itself and nests at most `MAX_NESTING` levels, before
/// something walks it recursively; the error names `what` and the path to the fault.
pub fn check_nesting(call: &str, what: &str, v: &Value) -> mlua::Result<()> {
    fn walk(call: &str, what: &str, t: &Table, path: &mut Vec<String>, ancestors: &mut Vec<*const std::ffi::c_void>) -> mlua::Result<()> {
        if ancestors.contains(&t.to_pointer()) {
            return Err(misuse(call, format!("{what}{} contains itself (a table that refers back to one holding it)", path.concat())));
        }
        if ancestors.len() >= MAX_NESTING {
            return Err(misuse(call, format!("{what} nests more than {MAX_NESTING} tables deep")));
        }
        ancestors.push(t.to_pointer());
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            if let Value::Table(child) = &v {
                path.push(match &k {
                    Value::String(s) => format!(".{}", s.to_string_lossy()),
                    other => format!("[{}]", describe(other).trim_start_matches("integer ")),
                });
                walk(call, what, child, path, ancestors)?;
                path.pop();
            }
        }
        ancestors.pop();
        Ok(())
    }
    match v {
        Value::Table(t) => walk(call, what, t, &mut Vec::new(), &mut Vec::new()),
        _ => Ok(()),
    }
}

/// A Lua value as JSON (a model's config, chat messages): tables with keys 1..n become arrays,
/// other tables objects with string keys; numbers must be finite and strings UTF-8. Anything
/// else (a function, a tensor, NaN) is an error naming `what` and the key that holds it.
pub fn to_json(call: &str, what: &str, v: &Value) -> mlua::Result<serde_json::Value> {
    check_nesting(call, what, v)?;
    fn convert(call: &str, path: &str, v: &Value) -> mlua::Result<serde_json::Value> {
        use serde_json::Value as J;
        Ok(match v {
            Value::Nil => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::Integer(i) => J::from(*i),
            Value::Number(n) => match serde_json::Number::from_f64(*n) {
                Some(n) => J::Number(n),
                None => return Err(misuse(call, format!("{path}: expected a finite number, got {}", describe(v)))),
            },
            Value::String(s) => J::String(text(call, path, s)?),
            Value::Table(t) => {
                let n = t.raw_len();
                let count = t.pairs::<Value, Value>().count();
                if n > 0 && n == count {
                    let items = t.clone().sequence_values::<Value>().enumerate().map(|(i, item)| convert(call, &format!("{path}[{}]", i + 1), &item?)).collect::<mlua::Result<_>>()?;
                    J::Array(items)
                } else {
                    let mut map = serde_json::Map::new();
                    for pair in t.pairs::<Value, Value>() {
                        let (key, item) = pair?;
                        let Value::String(key) = key else {
                            return Err(misuse(call, format!("{path}: keys must be names (strings), got {} (a table mixes a list and named keys?)", describe(&key))));
                        };
                        let key = text(call, path, &key)?;
                        let item = convert(call, &format!("{path}.{key}"), &item)?;
                        map.insert(key, item);
                    }
                    J::Object(map)
                }
            }
            other => return Err(misuse(call, format!("{path}: expected a number, string, boolean or table, got {}", describe(other)))),
        })
    }
    convert(call, what, v)
}

/// Takes the trailing options table (if the last argument is a table) off an argument list.
pub fn trailing_options(args: &mut Vec<Value>) -> Option<Table> {
    match args.last() {
        Some(Value::Table(_)) => match args.pop() {
            Some(Value::Table(t)) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// Fails when arguments are left over that the call does not take.
pub fn no_more(call: &str, args: &[Value]) -> mlua::Result<()> {
    match args.first() {
        None => Ok(()),
        Some(v) => Err(misuse(call, format!("unexpected extra argument {}", describe(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_described_briefly() {
        let lua = Lua::new();
        assert_eq!(describe(&Value::Number(-1e300)), "number -1e300");
        assert_eq!(describe(&Value::Number(1.5)), "number 1.5");
        assert_eq!(describe(&Value::Number(f64::NAN)), "number nan");
        let long = Value::String(lua.create_string("x".repeat(100)).unwrap());
        assert_eq!(describe(&long), format!("string '{}…' (100 characters)", "x".repeat(40)));
        let json = to_json("demo", "config", &lua.load("{ a = { 1, 2 }, b = 'x', c = true }").eval().unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({ "a": [1, 2], "b": "x", "c": true }));
        let err = to_json("demo", "config", &lua.load("{ a = { f = print } }").eval().unwrap()).unwrap_err().to_string();
        assert!(err.contains("demo: config.a.f: expected a number, string, boolean or table, got a function"), "{err}");
        let err = to_json("demo", "config", &lua.load("{ 1, x = 2 }").eval().unwrap()).unwrap_err().to_string();
        assert!(err.contains("keys must be names"), "{err}");
    }

    #[test]
    fn tidy_reduces_a_libtorch_panic_to_its_error() {
        let panic = "runtime error: called `Result::unwrap()` on an `Err` value: Torch(\"invalid size, possible overflow?\\nException raised from compute_arange_size\\nframe #0: ...\")\nstack traceback:\n\tx.lua:3: in main chunk";
        assert_eq!(tidy(panic), "libtorch error: invalid size, possible overflow?\nstack traceback:\n\tx.lua:3: in main chunk");
        assert_eq!(tidy("plain message"), "plain message");
        assert_eq!(concise("Internal torch error: bad shape\nException raised from f at x.cpp:1"), "bad shape");
        assert_eq!(concise("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::x"), "out of memory: tried to allocate 3.6 TiB");
        assert_eq!(
            concise("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which 1.00 GiB is free. Of the allocated memory …"),
            "out of memory on the GPU: Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which 1.00 GiB is free."
        );
        assert_eq!(option_error("lrr", "deserialize error: unknown field `lrr`, expected one of `lr`, `eps`", &["on_token"]), "unknown option 'lrr' (accepted: lr, eps, on_token)");
        assert_eq!(option_error(".", "unknown field `x`, expected `y`", &[]), "unknown option 'x' (accepted: y)");
        assert_eq!(option_error("lr", "invalid type: string \"fast\", expected f64", &[]), "option 'lr': expected a number, got string \"fast\"");
        assert_eq!(option_error("top_k", "invalid type: floating point `1.5`, expected i64", &[]), "option 'top_k': expected an integer, got number 1.5");
        assert_eq!(option_error("stride", "invalid value: integer `-1`, expected usize", &[]), "option 'stride': expected a non-negative integer, got integer -1");
        assert_eq!(option_error("betas", "invalid length 3, expected a tuple of size 2", &[]), "option 'betas': expected a list of 2 values, got 3");
        assert_eq!(option_error(".", "missing field `files`", &[]), "missing option 'files'");
    }
}
