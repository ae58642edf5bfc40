//! The terminal UI (ratatui + crossterm), the default front end of `moontune run` on a terminal:
//! `state` (what is known of the run), `view` (drawing it), `app` (the thread, keys, terminal).

pub mod app;
pub mod state;
pub mod view;

pub use app::{install_panic_restore, spawn};
pub use state::TuiState;
