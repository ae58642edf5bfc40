//! The CLI's commands besides `run`: `doctor` (environment report), `test` (Lua test files),
//! `repl` (an interactive prompt) and `types` (the API's annotations and reference).

pub mod doctor;
pub mod lua_tests;
pub mod repl;
pub mod types;
