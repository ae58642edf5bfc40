//! The run loop: loading a recipe (DESIGN.md's contract), resolving its config against
//! command-line overrides, calling `setup`, `step`, `evaluate` and `done`, writing the run
//! directory, and reporting everything as `Event`s.

pub mod checkpoints;
pub mod command;
pub mod config;
pub mod console;
pub mod event;
pub mod panel;
pub mod recipe;
pub mod reload;
pub mod rundir;
pub mod runner;
pub mod watch;

pub use command::Command;
pub use event::Event;
pub use runner::{run, RunOptions, RunOutcome};
