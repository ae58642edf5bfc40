//! Where the Lua standard library (stdlib/moontune/*.lua) comes from: read from the source tree
//! in debug builds (edit and rerun), embedded in release builds (the binary works anywhere).

/// The source of a stdlib module file (`"moontune/nn.lua"`), if it exists.
pub fn source(relative: &str) -> Option<(String, String)> {
    #[cfg(debug_assertions)]
    {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib").join(relative);
        std::fs::read_to_string(&path).ok().map(|src| (path.display().to_string(), src))
    }
    #[cfg(not(debug_assertions))]
    {
        include!(concat!(env!("OUT_DIR"), "/stdlib_files.rs"))
            .iter()
            .find(|(name, _)| *name == relative)
            .map(|(name, src)| (format!("@stdlib/{name}"), src.to_string()))
    }
}

/// The candidate files for a module name: `moontune.nn` → `moontune/nn.lua`, `moontune/nn/init.lua`.
pub fn candidates(module: &str) -> [String; 2] {
    let base = module.replace('.', "/");
    [format!("{base}.lua"), format!("{base}/init.lua")]
}
