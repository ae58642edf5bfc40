//! `moontune test [PATH...]`: runs Lua test files through moontune itself. A file passes if it
//! runs without error; if it returns a table of functions, each is a test case run on its own
//! (in name order) and reported separately. Each file gets a fresh VM. Directories are searched
//! for `*.lua` files. The closing line reads `N passed, M failed`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use mlua::{Function, Value};

use crate::lua::runtime::call_traced;
use crate::lua::{load_file, new_lua};

/// Every `.lua` file named or found under the named directories, sorted.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "lua"))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("no such test file or directory: {}", p.display());
        }
    }
    Ok(files)
}

/// Counts of one run.
#[derive(Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

fn report(tally: &mut Tally, name: &str, result: Result<(), String>) {
    match result {
        Ok(()) => {
            tally.passed += 1;
            let _ = super::output::line(format!("ok     {name}"));
        }
        Err(e) => {
            tally.failed += 1;
            let _ = super::output::line(format!("FAILED {name}\n{}", indent(&e)));
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn run_file(path: &Path, tally: &mut Tally) {
    let name = path.display().to_string();
    let setup = || -> Result<(mlua::Lua, Function), String> {
        let lua = new_lua(path.parent()).map_err(|e| format!("{e:#}"))?;
        let f = load_file(&lua, path, None).map_err(|e| format!("{e:#}"))?;
        Ok((lua, f))
    };
    let (lua, chunk) = match setup() {
        Ok(v) => v,
        Err(e) => return report(tally, &name, Err(e)),
    };
    let returned: Value = match call_traced(&lua, &chunk, ()) {
        Ok(v) => v,
        Err(e) => return report(tally, &name, Err(e)),
    };
    let Value::Table(cases) = returned else {
        return report(tally, &name, Ok(()));
    };
    let mut named: Vec<(String, Function)> = cases
        .pairs::<String, Function>()
        .filter_map(|p| p.ok())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    if named.is_empty() {
        return report(tally, &name, Err("returned a table without test functions".into()));
    }
    for (case, f) in named {
        let result = call_traced::<()>(&lua, &f, ());
        report(tally, &format!("{name}: {case}"), result);
        let _ = lua.gc_collect();
    }
}

/// Runs the files and prints one line per test and the closing `N passed, M failed` line.
pub fn run(paths: &[PathBuf]) -> Result<Tally> {
    let files = collect(paths)?;
    if files.is_empty() {
        bail!("no Lua test files found in {paths:?}");
    }
    let mut tally = Tally::default();
    for f in files {
        run_file(&f, &mut tally);
    }
    super::output::line(format!("{} passed, {} failed", tally.passed, tally.failed))?;
    Ok(tally)
}
