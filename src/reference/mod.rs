//! The API reference. types/moontune.lua (LuaLS annotations: editors complete and check recipes
//! with it) is its one source; `annotations` reads it and `markdown` makes docs/api.md of it.
//! The binary carries the file, so that `moontune types DIR` can install it anywhere.

pub mod annotations;
pub mod markdown;

/// types/moontune.lua as this binary was built with it.
pub const ANNOTATIONS: &str = include_str!("../../types/moontune.lua");
