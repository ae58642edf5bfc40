//! `moontune repl`: an interactive Lua prompt with `moontune` loaded as `mt` (Torch7's `th` is
//! the precedent). Line editing and history (rustyline, saved in ~/.moontune_history), multi-line
//! input (an incomplete chunk continues on the next line), expressions print their values, and
//! errors are shown without leaving the prompt.

use std::path::PathBuf;

use anyhow::Result;
use mlua::{Lua, MultiValue, Value};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use crate::lua::new_lua;
use crate::lua::runtime::call_traced;
use super::output;

/// What a chunk of input turned out to be.
pub enum Outcome {
    /// Values to print (possibly none).
    Values(Vec<String>),
    /// The chunk is not complete yet; read another line.
    Incomplete,
    /// A syntax or runtime error, with its traceback.
    Error(String),
}

/// Evaluates `input` as an expression if it is one, else as statements; in `env` if given.
/// Errors name the chunk `source` (`stdin` at the prompt, `control` for the run's FIFO).
pub fn eval(lua: &Lua, input: &str, env: Option<mlua::Table>, source: &str) -> Outcome {
    let chunk = |src: String| {
        let c = lua.load(src).set_name(format!("={source}"));
        match &env {
            Some(e) => c.set_environment(e.clone()),
            None => c,
        }
        .into_function()
    };
    let compiled = match chunk(format!("return {input}")) {
        Ok(f) => Ok(f),
        Err(_) => chunk(input.to_string()),
    };
    let f = match compiled {
        Ok(f) => f,
        Err(mlua::Error::SyntaxError { incomplete_input: true, .. }) => return Outcome::Incomplete,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    match call_traced::<MultiValue>(lua, &f, ()) {
        Ok(values) => Outcome::Values(values.iter().map(|v| show(v, 1)).collect()),
        Err(e) => Outcome::Error(e),
    }
}

/// A value as the prompt shows it: `tostring` for most, tables one level deep.
pub fn show(v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Table(t) if depth > 0 && t.metatable().is_none() => {
            let mut parts = Vec::new();
            let n = t.raw_len();
            for i in 1..=n {
                parts.push(show(&t.raw_get::<Value>(i).unwrap_or(Value::Nil), depth - 1));
            }
            for (k, val) in t.pairs::<Value, Value>().flatten() {
                if matches!(k, Value::Integer(i) if i >= 1 && i as usize <= n) {
                    continue;
                }
                let key = match &k {
                    Value::String(s) => s.to_string_lossy().to_string(),
                    other => format!("[{}]", show(other, 0)),
                };
                parts.push(format!("{key} = {}", show(&val, depth - 1)));
            }
            if parts.len() > 20 {
                parts.truncate(20);
                parts.push("...".into());
            }
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string().unwrap_or_else(|_| format!("{other:?}")),
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".moontune_history"))
}

pub fn run() -> Result<()> {
    let lua = new_lua(Some(&std::env::current_dir()?))?;
    lua.load("mt = require 'moontune'; T = mt.tensor").set_name("=repl").exec()?;
    output::line(format!("moontune {} — Lua 5.4 with `mt` (moontune) and `T` (mt.tensor) loaded. Ctrl-D exits.", env!("CARGO_PKG_VERSION")))?;
    let mut editor = DefaultEditor::new()?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "> " } else { ">> " };
        match editor.readline(prompt) {
            Ok(line) => {
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                match eval(&lua, &buffer, None, "stdin") {
                    Outcome::Incomplete => continue,
                    Outcome::Values(values) => {
                        if !values.is_empty() {
                            output::line(values.join("\t"))?;
                        }
                    }
                    Outcome::Error(e) => output::line(format!("error: {e}"))?,
                }
                let _ = editor.add_history_entry(buffer.as_str());
                buffer.clear();
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                output::line("(interrupted; Ctrl-D exits)")?;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_statements_continuations_and_errors() {
        let lua = new_lua(None).unwrap();
        match eval(&lua, "1 + 2", None, "stdin") {
            Outcome::Values(v) => assert_eq!(v, vec!["3"]),
            _ => panic!("expected a value"),
        }
        assert!(matches!(eval(&lua, "x = 5", None, "stdin"), Outcome::Values(v) if v.is_empty()));
        assert!(matches!(eval(&lua, "x", None, "stdin"), Outcome::Values(v) if v == vec!["5"]));
        assert!(matches!(eval(&lua, "function f()", None, "stdin"), Outcome::Incomplete));
        assert!(matches!(eval(&lua, "function f()\n return 7 end", None, "stdin"), Outcome::Values(_)));
        assert!(matches!(eval(&lua, "f()", None, "stdin"), Outcome::Values(v) if v == vec!["7"]));
        match eval(&lua, "error('boom')", None, "stdin") {
            Outcome::Error(e) => assert!(e.contains("boom") && e.contains("traceback"), "{e}"),
            _ => panic!("expected an error"),
        }
        assert!(matches!(eval(&lua, "{1, 2, a = 'b'}", None, "stdin"), Outcome::Values(v) if v == vec!["{1, 2, a = \"b\"}"]));
    }
}
