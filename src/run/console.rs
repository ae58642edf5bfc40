//! The REPL into a live run: a line of Lua evaluated in the run's VM between two steps, with
//! `state` and `cfg` in scope, its values or error returned as text; and the control FIFO in
//! the run directory, whose lines (`:pause`, `:reload`, … or Lua) become commands, so that the
//! same works headless: `echo 'state.opt:set_lr(1e-4)' > runs/<run>/control`.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc::Sender;

use anyhow::{bail, Result};
use mlua::{Lua, Table, Value};

use super::command::Command;
use crate::commands::repl::{eval, Outcome};

/// Evaluates `line` with `state` and `cfg` visible (other globals through `_G`).
pub fn eval_in_run(lua: &Lua, line: &str, state: &Value, cfg: &Table) -> String {
    let env = (|| -> mlua::Result<Table> {
        let env = lua.create_table()?;
        env.set("state", state.clone())?;
        env.set("cfg", cfg.clone())?;
        let meta = lua.create_table()?;
        meta.set("__index", lua.globals())?;
        meta.set("__newindex", lua.globals())?;
        env.set_metatable(Some(meta))?;
        Ok(env)
    })();
    let env = match env {
        Ok(e) => e,
        Err(e) => return format!("error: {e}"),
    };
    match eval(lua, line, Some(env), "control") {
        Outcome::Values(v) if v.is_empty() => "ok".to_string(),
        Outcome::Values(v) => v.join("\t"),
        Outcome::Incomplete => "error: incomplete input (a REPL line must be a complete chunk)".to_string(),
        Outcome::Error(e) => format!("error: {e}"),
    }
}

/// Makes the FIFO `path` and a thread that turns each line written to it into a command.
pub fn spawn_control_fifo(path: &Path, commands: Sender<Command>) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a plain libc call on a NUL-terminated path.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        bail!("cannot make the control FIFO {}: {}", path.display(), std::io::Error::last_os_error());
    }
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // Opened for reading and writing, once: holding a write end itself, the reader never sees
        // end-of-file between writers, so it never closes and reopens the FIFO, and a writer that
        // opens while an earlier one is closing cannot find it without a reader (a broken pipe).
        let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&path) else { return };
        for line in BufReader::new(file).lines() {
            let Ok(line) = line else { return };
            if let Some(cmd) = Command::parse_control(&line) {
                if commands.send(cmd).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}
