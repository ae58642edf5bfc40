//! Front ends that show a run. `headless`: a live progress line on a terminal, plain lines
//! otherwise. (The full-screen TUI builds on the same events.)

pub mod headless;
pub mod progress;
