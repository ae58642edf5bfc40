//! The CLI's commands besides `run`: `doctor` (environment report), `test` (Lua test files),
//! `repl` (an interactive prompt), `types` (the API's annotations and reference), `convert`
//! (Hugging Face directories and GGUF files, both ways), `data inspect` (what a dataset holds) and
//! `report` (pictures of runs); `output` writes to standard output
//! without panicking.

pub mod convert;
pub mod data;
pub mod doctor;
pub mod lua_tests;
pub mod output;
pub mod repl;
pub mod report;
pub mod types;
