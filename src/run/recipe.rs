//! A loaded recipe: the table a recipe file returns (DESIGN.md's contract), checked for its
//! fields, or nothing for a plain script (which has then already run top to bottom).

use anyhow::{bail, Result};
use mlua::{Function, Table, Value};

const FIELDS: &[&str] = &["config", "setup", "step", "evaluate", "on_reload", "done", "finish", "save", "load"];

pub struct Recipe {
    pub config: Table,
    pub setup: Option<Function>,
    pub step: Function,
    pub evaluate: Option<Function>,
    pub on_reload: Option<Function>,
    pub done: Option<Function>,
    /// `finish(state, cfg)`: once, after the last step and the final evaluation (also when the
    /// run is stopped early by `:quit`, `q` or Ctrl-C).
    pub finish: Option<Function>,
    /// `save(state, cfg, dir)`: adds to a checkpoint being written in `dir` (before it is
    /// committed); moontune saves the state itself.
    pub save: Option<Function>,
    /// `load(state, cfg, dir)`: after moontune restored a checkpoint into `state` (`--resume`).
    pub load: Option<Function>,
}

fn function(table: &Table, key: &str) -> Result<Option<Function>> {
    match table.raw_get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::Function(f) => Ok(Some(f)),
        other => bail!("recipe field '{key}' must be a function, got a {}", other.type_name()),
    }
}

impl Recipe {
    /// Checks a recipe table: known fields only, `step` required, `config` a table if present.
    pub fn from_table(lua: &mlua::Lua, table: Table) -> Result<Recipe> {
        for pair in table.pairs::<Value, Value>() {
            let (k, _) = pair?;
            let name = match &k {
                Value::String(s) => s.to_string_lossy(),
                other => bail!("recipe table has a non-string key {other:?}"),
            };
            if !FIELDS.contains(&name.as_str()) {
                bail!("recipe has an unknown field '{name}' (expected: {})", FIELDS.join(", "));
            }
        }
        let config = match table.raw_get::<Value>("config")? {
            Value::Nil => lua.create_table()?,
            Value::Table(t) => t,
            other => bail!("recipe field 'config' must be a table, got a {}", other.type_name()),
        };
        let Some(step) = function(&table, "step")? else {
            bail!("recipe has no 'step' function (a recipe returns {{ config, setup, step, ... }})");
        };
        Ok(Recipe {
            config,
            setup: function(&table, "setup")?,
            step,
            evaluate: function(&table, "evaluate")?,
            on_reload: function(&table, "on_reload")?,
            done: function(&table, "done")?,
            finish: function(&table, "finish")?,
            save: function(&table, "save")?,
            load: function(&table, "load")?,
        })
    }
}
