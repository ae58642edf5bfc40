//! Keeps the run loops of a data-parallel run in step. Rank 0 is the main rank: it alone makes
//! and writes the run directory, watches the recipe, reads the control FIFO and shows the UI;
//! at every step boundary it sends the others what it decided (the commands that arrived, a
//! reload, a stop), so that each change applies on every rank at the same step. The numbers a
//! step or an evaluation returns are averaged across ranks (`tokens`, a count, is summed)
//! before they are logged. In a world of one every call returns its input.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use tch::Tensor;

use super::world::{names_hash, world, Op, World};
use crate::run::command::Command;
use crate::run::event::Metrics;

/// Metrics that are counts, summed across ranks rather than averaged.
const SUMMED: &[&str] = &["tokens", "examples", "samples"];

pub struct Lockstep {
    world: Option<Arc<World>>,
}

/// What the main rank decided at a step boundary.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    pub commands: Vec<Command>,
    /// Stop after this boundary (Ctrl-C on the main rank).
    pub stop: bool,
}

impl Lockstep {
    /// Joins the ranks (a world of one joins nothing).
    pub fn join() -> Result<Lockstep> {
        Ok(Lockstep { world: world()? })
    }

    pub fn is_main(&self) -> bool {
        self.world.as_ref().is_none_or(|w| w.place.rank == 0)
    }

    pub fn rank(&self) -> usize {
        self.world.as_ref().map_or(0, |w| w.place.rank)
    }

    /// Waits for every rank (a checkpoint: the others' parts are written before rank 0 commits).
    pub fn barrier(&self, what: &str) -> Result<()> {
        match &self.world {
            Some(w) => w.barrier().map_err(|e| anyhow!("{what}: {e:#}")),
            None => Ok(()),
        }
    }

    /// The run directory the main rank made (it passes `Some`), on every rank.
    pub fn run_dir(&self, made: Option<&Path>) -> Result<PathBuf> {
        let Some(world) = &self.world else { return made.map(Path::to_path_buf).ok_or_else(|| anyhow!("no run directory")) };
        let bytes = made.map(|p| p.to_string_lossy().into_owned().into_bytes()).unwrap_or_default();
        let shared = world.broadcast_bytes(&bytes, "sharing the run directory")?;
        Ok(PathBuf::from(String::from_utf8(shared)?))
    }

    /// The main rank's decisions on every rank (the others' own are ignored).
    pub fn decide(&self, mine: Decisions) -> Result<Decisions> {
        let Some(world) = &self.world else { return Ok(mine) };
        let bytes = if world.place.rank == 0 { encode(&mine).into_bytes() } else { Vec::new() };
        let shared = world.broadcast_bytes(&bytes, "sharing the step boundary's commands")?;
        decode(&String::from_utf8(shared)?)
    }

    /// The ranks' metrics combined: averaged, counts summed. Every rank must return the same
    /// names.
    pub fn combine(&self, metrics: Metrics, what: &str) -> Result<Metrics> {
        let Some(world) = &self.world else { return Ok(metrics) };
        world.agree(&[metrics.len() as i64, names_hash(metrics.iter().map(|(n, _)| n.as_str()))], &format!("the names of the numbers {what} returned"))?;
        if metrics.is_empty() {
            return Ok(metrics);
        }
        let values = Tensor::from_slice(&metrics.iter().map(|(_, v)| *v).collect::<Vec<f64>>());
        world.all_reduce(&values, Op::Sum)?;
        let size = world.place.size as f64;
        let sums = Vec::<f64>::try_from(&values)?;
        Ok(metrics.into_iter().zip(sums).map(|((name, _), sum)| {
            let value = if SUMMED.contains(&name.as_str()) { sum } else { sum / size };
            (name, value)
        }).collect())
    }
}

/// One command per line; a REPL line keeps its text after `repl `, with newlines escaped.
fn encode(d: &Decisions) -> String {
    let mut lines: Vec<String> = d.commands.iter().map(|c| match c {
        Command::Pause => "pause".into(),
        Command::Resume => "resume".into(),
        Command::TogglePause => "toggle".into(),
        Command::Save => "save".into(),
        Command::EvalNow => "eval".into(),
        Command::Reload => "reload".into(),
        Command::Quit => "quit".into(),
        Command::Repl(line) => format!("repl {}", line.replace('\\', "\\\\").replace('\n', "\\n")),
    }).collect();
    if d.stop {
        lines.push("stop".into());
    }
    lines.join("\n")
}

fn decode(text: &str) -> Result<Decisions> {
    let mut d = Decisions::default();
    for line in text.lines() {
        let command = match line {
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "toggle" => Command::TogglePause,
            "save" => Command::Save,
            "eval" => Command::EvalNow,
            "reload" => Command::Reload,
            "quit" => Command::Quit,
            "stop" => {
                d.stop = true;
                continue;
            }
            other => match other.strip_prefix("repl ") {
                Some(lua) => Command::Repl(unescape(lua)),
                None => bail!("the main rank sent an unknown command {other:?}"),
            },
        };
        d.commands.push(command);
    }
    Ok(d)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip() {
        let d = Decisions { commands: vec![Command::Pause, Command::Repl("cfg.lr = 1e-4\nprint('a\\\\b')".into()), Command::Reload, Command::Save], stop: true };
        assert_eq!(decode(&encode(&d)).unwrap(), d);
        assert_eq!(decode("").unwrap(), Decisions::default());
        assert!(decode("jump").is_err());
    }
}
