//! The NCCL backend for CUDA tensors (src/dist/nccl.cpp). build.rs compiles it as a shared object
//! of its own, linked with libtorch_cuda, and this binary embeds it: on first use it is written to
//! moontune's cache folder (once per build: its name carries a hash of its bytes) and loaded with
//! dlopen, so that CPU-only runs never load libtorch_cuda for it. A build against a CPU-only
//! libtorch, or without NCCL's or CCCL's headers, has no NCCL backend and says so.

use std::ffi::{c_char, c_int, c_void};

use anyhow::Result;

/// `moontune_nccl_attach(group, store, rank, size, timeout_ms)`: the shared object's one entry.
pub type Attach = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int, c_int, i64) -> *mut c_char;

/// Whether this build has the NCCL backend.
pub fn built() -> bool {
    cfg!(moontune_nccl)
}

/// The shared object's entry, loading it on first use.
#[cfg(moontune_nccl)]
pub fn attach_function() -> Result<Attach> {
    use std::sync::OnceLock;
    static LOADED: OnceLock<std::result::Result<Attach, String>> = OnceLock::new();
    LOADED.get_or_init(|| load().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow::anyhow!(e))
}

#[cfg(not(moontune_nccl))]
pub fn attach_function() -> Result<Attach> {
    anyhow::bail!(NOT_BUILT)
}

const NOT_BUILT: &str = "this moontune was built without the NCCL backend (it needs a CUDA build of libtorch and the headers of NCCL and CCCL: run `source tools/env.sh` and rebuild)";

/// Ok where NCCL can be used here: the build has it and a CUDA device is visible.
pub fn usable() -> Result<()> {
    if !built() {
        anyhow::bail!(NOT_BUILT);
    }
    if !tch::Cuda::is_available() {
        anyhow::bail!("NCCL carries CUDA tensors, and no CUDA device is available here");
    }
    Ok(())
}

#[cfg(moontune_nccl)]
fn load() -> Result<Attach> {
    use std::ffi::{CStr, CString};
    use std::hash::Hasher;

    use anyhow::{bail, Context};

    const SHARED_OBJECT: &[u8] = include_bytes!(env!("MOONTUNE_NCCL_SO"));
    let mut hash = std::collections::hash_map::DefaultHasher::new();
    hash.write(SHARED_OBJECT);
    let dir = cache_dir().join("lib");
    let path = dir.join(format!("libmoontune_nccl-{:016x}.so", hash.finish()));
    if !path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
        // Written aside and renamed, so that ranks starting together never load a partial file.
        let partial = dir.join(format!(".libmoontune_nccl-{}.partial", std::process::id()));
        std::fs::write(&partial, SHARED_OBJECT).with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let name = CString::new(path.to_string_lossy().as_bytes())?;
    // SAFETY: dlopen with a NUL-terminated path; the handle is kept for the process's life.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror's message is owned by libc, valid until the next dl call.
        let error = unsafe { libc::dlerror() };
        let why = if error.is_null() { "unknown error".into() } else { unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned() };
        bail!("cannot load the NCCL backend {}: {why}", path.display());
    }
    // SAFETY: a live handle and a NUL-terminated symbol name.
    let symbol = unsafe { libc::dlsym(handle, c"moontune_nccl_attach".as_ptr()) };
    if symbol.is_null() {
        bail!("the NCCL backend {} has no moontune_nccl_attach", path.display());
    }
    // SAFETY: the address of `moontune_nccl_attach`, whose signature is `Attach`.
    Ok(unsafe { std::mem::transmute::<*mut c_void, Attach>(symbol) })
}

/// moontune's cache folder, as tools/env.sh finds it: $MOONTUNE_HOME, else
/// $XDG_CACHE_HOME/moontune, else ~/.cache/moontune (the system's temporary folder without a home).
#[cfg(moontune_nccl)]
fn cache_dir() -> std::path::PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    var("MOONTUNE_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("moontune")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/moontune")))
        .unwrap_or_else(|| std::env::temp_dir().join("moontune"))
}
