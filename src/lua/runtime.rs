//! Making a Lua VM for moontune, in stages: standard libraries (the safe ones, and of the debug
//! library only `debug.traceback`), the native module, the stdlib searcher (stdlib/ on disk in
//! debug builds, embedded in release), the recipe's folder first on `package.path`, and `print`
//! routed to a sink (stdout, or the run's event channel).

use std::path::Path;

use anyhow::{Context, Result};
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value, Variadic};

use super::{module, stdlib};

/// Where `print` and `mt.log` output goes.
pub type PrintSink = Box<dyn Fn(String) + Send>;

/// A fresh VM with `require "moontune"` available, and modules beside `script_dir` found first.
pub fn new_lua(script_dir: Option<&Path>) -> Result<Lua> {
    // SAFETY: the debug library is loaded only to take `debug.traceback` from it; the rest of it
    // (which can break the VM's invariants: setupvalue, setmetatable on userdata, …) is removed
    // before any script runs.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL_SAFE | StdLib::DEBUG, LuaOptions::new()) };
    keep_only_traceback(&lua).context("restricting the debug library")?;
    install_moontune(&lua, script_dir)?;
    limit_memory(&lua, default_memory_limit())?;
    Ok(lua)
}

/// The Lua heap's default limit: 8 GiB, or half the machine's memory if that is less. Tensors
/// are not on the Lua heap; tables, strings and closures are.
pub fn default_memory_limit() -> u64 {
    let half = crate::tensor::headroom::total_bytes().map(|t| t / 2).unwrap_or(u64::MAX);
    half.min(8 << 30)
}

/// The limit the Lua heap was given.
struct MemoryLimit(u64);

/// Limits the Lua heap to `bytes`: an allocation past it is a Lua error ("out of memory"),
/// not the process aborting.
pub fn limit_memory(lua: &Lua, bytes: u64) -> Result<()> {
    lua.set_memory_limit(usize::try_from(bytes).unwrap_or(usize::MAX)).context("setting the Lua memory limit")?;
    lua.set_app_data(MemoryLimit(bytes));
    Ok(())
}

/// Lua's "not enough memory" in moontune's terms.
fn memory_message(lua: &Lua) -> String {
    let limit = lua.app_data_ref::<MemoryLimit>().map(|l| crate::tensor::headroom::human(l.0)).unwrap_or_else(|| "its limit".into());
    format!("out of memory: the Lua heap (tables, strings) reached {limit}; raise the limit with --lua-memory, or keep less in Lua (tensors do not count)")
}

/// Makes `require "moontune"` work in `lua`, with modules beside `script_dir` found first (the
/// part of [`new_lua`] that does not restrict the standard libraries; the API reference's
/// coverage test uses it in a VM with the whole debug library, to enumerate the bindings).
pub fn install_moontune(lua: &Lua, script_dir: Option<&Path>) -> Result<()> {
    install_native(lua).context("registering the native module")?;
    super::random::install(lua).context("installing math.random")?;
    install_searcher(lua).context("installing the stdlib searcher")?;
    if let Some(dir) = script_dir {
        prepend_path(lua, dir).context("setting package.path")?;
    }
    Ok(())
}

/// Replaces the debug library by a table holding only `traceback`, and keeps the real traceback
/// for error handlers (so that a script cannot break them by replacing `debug`).
fn keep_only_traceback(lua: &Lua) -> mlua::Result<()> {
    let traceback: Function = lua.globals().get::<Table>("debug")?.get("traceback")?;
    let traced: Function = lua.load(TRACED_CALL).set_name("=moontune").call(traceback.clone())?;
    lua.set_named_registry_value(TRACED_KEY, traced)?;
    let debug = lua.create_table()?;
    debug.set("traceback", traceback)?;
    lua.globals().set("debug", debug)
}

fn install_native(lua: &Lua) -> mlua::Result<()> {
    let preload: Table = lua.globals().get::<Table>("package")?.get("preload")?;
    preload.set("moontune.core", lua.create_function(|lua, ()| module::create(lua))?)
}

/// A `package.searchers` entry for `moontune` and `moontune.*` that reads the stdlib.
fn install_searcher(lua: &Lua) -> mlua::Result<()> {
    let searcher = lua.create_function(|lua, name: String| {
        if name != "moontune" && !name.starts_with("moontune.") {
            return Ok(Value::Nil);
        }
        for candidate in stdlib::candidates(&name) {
            if let Some((chunk_name, src)) = stdlib::source(&candidate) {
                let loader: Function = lua.load(src).set_name(format!("@{chunk_name}")).into_function()?;
                return Ok(Value::Function(loader));
            }
        }
        Ok(Value::String(lua.create_string(format!("\n\tno stdlib module '{name}'"))?))
    })?;
    let searchers: Table = lua.globals().get::<Table>("package")?.get("searchers")?;
    // After the preload searcher, before the path searchers.
    searchers.raw_insert(2, searcher)
}

fn prepend_path(lua: &Lua, dir: &Path) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    let current: String = package.get("path")?;
    let d = dir.display();
    package.set("path", format!("{d}/?.lua;{d}/?/init.lua;{current}"))
}

/// Sends `print` (and `mt.log`, which stdlib defines over `print`) to `sink`.
pub fn route_print(lua: &Lua, sink: PrintSink) -> mlua::Result<()> {
    let print = lua.create_function(move |lua, values: Variadic<Value>| {
        sink(module::join_for_print(lua, values)?);
        Ok(())
    })?;
    lua.globals().set("print", print)
}

/// Loads a file as a function named by its path, so that errors point at `file:line`; in
/// `env` if given (else the globals).
pub fn load_file(lua: &Lua, path: &Path, env: Option<Table>) -> Result<Function> {
    let src = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // A UTF-8 byte-order mark and a shebang line are skipped, as Lua's own loadfile does.
    let src = src.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(src);
    let src = src.strip_prefix("#!").map(|rest| format!("--{rest}")).unwrap_or(src);
    let chunk = lua.load(src).set_name(format!("@{}", path.display()));
    match env {
        Some(env) => chunk.set_environment(env),
        None => chunk,
    }
    .into_function()
    .map_err(|e| anyhow::anyhow!("{e}"))
}

const TRACED_KEY: &str = "moontune.traced_call";

/// Given `debug.traceback`, a function that calls f under xpcall; the handler adds a traceback
/// unless the message (an error raised by a native function) already carries one. An error
/// value that is a table without `__tostring` (`error({ code = 3 })`) is shown by its fields,
/// not its address; one whose `__tostring` fails says so.
const TRACED_CALL: &str = r#"
local traceback = ...
local function shown(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end
local function message(e)
  local meta = getmetatable(e)
  if type(e) == "table" and not (type(meta) == "table" and meta.__tostring) then
    local fields = {}
    for k, v in pairs(e) do
      if #fields == 20 then fields[#fields + 1] = "..." break end
      fields[#fields + 1] = (type(k) == "string" and k or "[" .. shown(k) .. "]") .. " = " .. shown(v)
    end
    return "error object { " .. table.concat(fields, ", ") .. " }"
  end
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  return "an error value whose __tostring failed: " .. tostring(s)
end
return function(f, ...)
  return xpcall(f, function(e)
    local s = message(e)
    if s:find("stack traceback:", 1, true) then return s end
    return traceback(s, 2)
  end, ...)
end"#;

/// Calls `f(args...)` under a traceback handler. A failure comes back as the Lua error message
/// followed by its stack traceback, so that it names `file:line`.
pub fn call_traced<R: mlua::FromLuaMulti>(lua: &Lua, f: &Function, args: impl mlua::IntoLuaMulti) -> Result<R, String> {
    let traced: Function = lua.named_registry_value(TRACED_KEY).map_err(|e| format!("the traceback handler is missing: {e}"))?;
    let args = args.into_lua_multi(lua).map_err(|e| e.to_string())?;
    let mut all = vec![Value::Function(f.clone())];
    all.extend(args);
    let mut results: Vec<Value> = traced
        .call::<mlua::MultiValue>(mlua::MultiValue::from_iter(all))
        .map_err(|e| match e {
            mlua::Error::MemoryError(_) => memory_message(lua),
            e => e.to_string(),
        })?
        .into_iter()
        .collect();
    let ok = matches!(results.first(), Some(Value::Boolean(true)));
    if results.is_empty() {
        return Err("the call returned nothing".into());
    }
    results.remove(0);
    if !ok {
        return Err(match results.into_iter().next() {
            Some(Value::String(s)) if s.as_bytes().ends_with(b"not enough memory") => memory_message(lua),
            Some(Value::String(s)) => super::args::tidy(&s.to_string_lossy()),
            Some(other) => format!("{other:?}"),
            None => "error (no message)".into(),
        });
    }
    R::from_lua_multi(mlua::MultiValue::from_iter(results), lua).map_err(|e| e.to_string())
}
