//! Front ends that show a run, fed by the same events: `tui` (full screen, the default on a
//! terminal) and `headless` (a live progress line on a terminal, plain lines otherwise).

pub mod headless;
pub mod progress;
pub mod tui;
