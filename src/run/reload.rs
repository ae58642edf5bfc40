//! Hot reload of a recipe: the modules it `require`d from its own folder are forgotten, the file
//! is loaded again in a fresh environment (reading globals through `_G`), and its table checked
//! as a recipe. The run loop decides what to keep (state, config) and when to swap.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use mlua::{Function, Lua, Table, Value};

use super::recipe::Recipe;
use super::watch::canonical;
use crate::lua::load_file;
use crate::lua::runtime::call_traced;

/// Names and files of the loaded modules that live in `dir` (the recipe's folder).
fn local_modules(lua: &Lua, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let package: Table = lua.globals().get("package")?;
    let loaded: Table = package.get("loaded")?;
    let searchpath: Function = package.get("searchpath")?;
    let d = dir.display();
    let pattern = format!("{d}/?.lua;{d}/?/init.lua");
    let mut out = Vec::new();
    for pair in loaded.pairs::<Value, Value>() {
        let (Value::String(name), _) = pair? else { continue };
        let name = name.to_string_lossy();
        if let Value::String(file) = searchpath.call::<Value>((name.as_str(), pattern.as_str()))? {
            out.push((name, canonical(Path::new(&*file.to_string_lossy()))));
        }
    }
    Ok(out)
}

/// The recipe file and the module files it pulled in from its folder: what to watch.
pub fn watched_files(lua: &Lua, recipe: &Path) -> Result<HashSet<PathBuf>> {
    let dir = recipe.parent().unwrap_or(Path::new("."));
    let mut files: HashSet<PathBuf> = local_modules(lua, dir)?.into_iter().map(|(_, f)| f).collect();
    files.insert(canonical(recipe));
    Ok(files)
}

/// Loads `recipe` again: forgets its folder's modules (so that `require` reads them anew), runs
/// the file in a fresh environment and checks the table it returns.
pub fn reload_recipe(lua: &Lua, recipe: &Path) -> Result<Recipe> {
    let dir = recipe.parent().unwrap_or(Path::new("."));
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    for (name, _) in local_modules(lua, dir)? {
        loaded.set(name, Value::Nil)?;
    }
    let env = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.set("__index", lua.globals())?;
    env.set_metatable(Some(meta))?;
    let chunk = load_file(lua, recipe, Some(env))?;
    match call_traced::<Value>(lua, &chunk, ()).map_err(|e| anyhow!(e))? {
        Value::Table(t) => Recipe::from_table(lua, t),
        other => bail!("{} now returns a {}, not a recipe table", recipe.display(), other.type_name()),
    }
}

/// The new config after a reload: the running one, with the new file's defaults for every key
/// not given on the command line.
pub fn merge_config(cfg: &Table, new_defaults: &Table, from_cli: &[String]) -> Result<()> {
    crate::lua::args::check_nesting("the recipe", "config", &Value::Table(new_defaults.clone()))?;
    for pair in new_defaults.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let given = matches!(&k, Value::String(s) if from_cli.iter().any(|c| s.to_str().map(|s| *s == **c).unwrap_or(false)));
        if !given {
            cfg.raw_set(k, v)?;
        }
    }
    Ok(())
}
