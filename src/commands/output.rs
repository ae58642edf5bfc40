//! Writing a command's output to standard output: a write that fails (a full disk, a closed
//! pipe) is an error that says so, not a panic (`println!` panics on it).

use std::fmt::Display;
use std::io::Write;

use anyhow::{Context, Result};

/// Writes `text` and a newline to standard output.
pub fn line(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).context("cannot write to standard output")
}

/// Writes `text` as it is to standard output.
pub fn text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to standard output")
}
