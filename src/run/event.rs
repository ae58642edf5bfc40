//! What the run thread tells front ends. Events flow one way, over a channel.

use std::path::PathBuf;

use crate::nn::module::ParamCounts;

/// A named numeric value a recipe returned (`loss`, `lr`, `acc`, …).
pub type Metrics = Vec<(String, f64)>;

/// A table a recipe reported under `panels` (a confusion matrix, attention over adapters, gate
/// values): shown as a heat map.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub name: String,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Busy {
    Evaluating,
    Reloading,
}

#[derive(Clone, Debug)]
pub enum Event {
    /// The recipe loaded and `setup` is about to run.
    Started { recipe: String, run_dir: Option<PathBuf>, total_steps: Option<u64>, log_every: u64 },
    /// The loop's settings changed while running (a REPL line or a reload set `cfg.steps` or
    /// `cfg.log_every`).
    Settings { total_steps: Option<u64>, log_every: u64 },
    /// `step` returned.
    Step { step: u64, metrics: Metrics, panels: Vec<Panel> },
    /// `evaluate` returned.
    Eval { step: u64, metrics: Metrics, panels: Vec<Panel> },
    /// Parameter counts of `state.model` (overall and per owner), when the recipe has one.
    Model(ParamCounts),
    /// The adapters of `state.model` (method, active, sizes, norms), after setup and each step.
    Adapters(Vec<crate::peft::AdapterSummary>),
    /// A line from `print` or `mt.log`.
    Log(String),
    /// A reload was tried at `step`: `version` is the one now running; `error` says why the new
    /// version was not taken (or was put back).
    Reload { step: u64, version: u32, error: Option<String> },
    /// The run was paused or resumed.
    Paused(bool),
    /// Between steps, the run is evaluating or reloading (until the next event says otherwise).
    Busy(Busy),
    /// The run ended (finished, stopped, or failed with `error`).
    Finished { step: u64, run_dir: Option<PathBuf>, error: Option<String>, interrupted: bool },
}
