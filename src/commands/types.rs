//! `moontune types`: installs the LuaLS annotations (types/moontune.lua) for editors, or writes
//! the markdown API reference made from them.

use std::path::Path;

use anyhow::{Context, Result};

use crate::io::atomic::write_atomic;
use crate::reference::{annotations, markdown, ANNOTATIONS};

/// Writes `dir/moontune.lua` and returns what to tell the user.
pub fn install(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("moontune.lua");
    write_atomic(&path, ANNOTATIONS.as_bytes())?;
    Ok(format!(
        "wrote {}\nThe Lua language server (VS Code's \"Lua\" extension, Neovim's lua_ls) reads it when it is in your \
         workspace; elsewhere, add its folder to \"workspace.library\" in .luarc.json.",
        path.display()
    ))
}

/// The markdown reference.
pub fn reference_markdown() -> Result<String> {
    Ok(markdown::render(&annotations::parse(ANNOTATIONS)?))
}
