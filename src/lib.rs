//! moontune: a native runtime that embeds Lua 5.4 and exposes libtorch tensors, autograd,
//! modules, optimizers and a training loop to recipes written in Lua.
//!
//! Layers (see DESIGN.md): `lua` binds the Rust core (`tensor`, `nn`, `models`, `optim`, `io`,
//! `metrics`) to scripts; `gguf` reads and writes llama.cpp's files; `run` owns the recipe loop and its events; `ui` shows them; `commands` are the CLI's
//! other verbs; `reference` reads the API's annotations (types/moontune.lua) for its docs.

pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod dist;
pub mod gguf;
pub mod io;
pub mod lua;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod optim;
pub mod peft;
pub mod reference;
pub mod report;
pub mod run;
pub mod tensor;
pub mod tokenizer;
pub mod ui;
