//! What the run thread tells front ends. Events flow one way, over a channel.

use std::path::PathBuf;

/// A named numeric value a recipe returned (`loss`, `lr`, `acc`, …).
pub type Metrics = Vec<(String, f64)>;

#[derive(Clone, Debug)]
pub enum Event {
    /// The recipe loaded and `setup` is about to run.
    Started { recipe: String, run_dir: Option<PathBuf>, total_steps: Option<u64>, log_every: u64 },
    /// `step` returned.
    Step { step: u64, metrics: Metrics },
    /// `evaluate` returned.
    Eval { step: u64, metrics: Metrics },
    /// A line from `print` or `mt.log`.
    Log(String),
    /// A reload was tried at `step`: `version` is the one now running; `error` says why the new
    /// version was not taken (or was put back).
    Reload { step: u64, version: u32, error: Option<String> },
    /// The run was paused or resumed.
    Paused(bool),
    /// The run ended (finished, stopped, or failed with `error`).
    Finished { step: u64, run_dir: Option<PathBuf>, error: Option<String>, interrupted: bool },
}
