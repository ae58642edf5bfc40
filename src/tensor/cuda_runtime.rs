//! Loads libtorch's CUDA half (libtorch_cuda.so, which brings cuBLAS, cuDNN and the rest) at
//! start-up, and only on a machine with an NVIDIA driver. The binary does not link it: on a
//! CPU-only machine its libraries would cost about 235 MB of resident memory for nothing
//! (measured here: 121 MB resident after libtorch_cpu, 356 MB after libtorch_cuda too).
//! Its static initialisers register CUDA with libtorch, so loading must come before the first
//! tensor call, which caches whether CUDA exists: `main` calls `load` first.

use std::ffi::{CStr, CString};
use std::path::Path;

/// Whether this machine has an NVIDIA driver (its control device or its /proc entry).
pub fn has_nvidia_driver() -> bool {
    Path::new("/dev/nvidiactl").exists() || Path::new("/proc/driver/nvidia/version").exists()
}

/// Loads libtorch_cuda.so where a driver is present: from the libtorch moontune was built
/// against, else by name (the rpath, LD_LIBRARY_PATH). Returns why it could not, if it could not.
pub fn load() -> Option<String> {
    // A CPU-only libtorch has no CUDA half to load.
    if option_env!("MOONTUNE_LIBTORCH_CUDA").is_none() || !has_nvidia_driver() {
        return None;
    }
    let mut candidates = Vec::new();
    if let Some(dir) = option_env!("MOONTUNE_LIBTORCH_DIR") {
        candidates.push(format!("{dir}/libtorch_cuda.so"));
    }
    candidates.push("libtorch_cuda.so".to_string());
    let mut last_error = String::new();
    for name in candidates {
        let Ok(c_name) = CString::new(name) else { continue };
        // SAFETY: dlopen with a NUL-terminated path; the handle is kept for the process's life.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return None;
        }
        // SAFETY: dlerror returns a message owned by libc, valid until the next dl call.
        let error = unsafe { libc::dlerror() };
        if !error.is_null() {
            last_error = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        }
    }
    Some(format!("the NVIDIA driver is present but libtorch_cuda.so could not be loaded ({last_error}); CUDA is unavailable"))
}
