//! The CLI's commands besides `run`: `doctor` (environment report), `test` (Lua test files) and
//! `repl` (an interactive prompt).

pub mod doctor;
pub mod lua_tests;
pub mod repl;
