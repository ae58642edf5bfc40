//! The CLI's commands besides `run`: `doctor` (environment report), `test` (Lua test files),
//! `repl` (an interactive prompt) and `types` (the API's annotations and reference); `output`
//! writes to standard output without panicking.

pub mod doctor;
pub mod lua_tests;
pub mod output;
pub mod repl;
pub mod types;
