//! `moontune doctor`: what this moontune runs on — its version, the libtorch it loaded (read at
//! run time from the loaded library's own torch/version.py), Lua, thread count, and CUDA with
//! each device's name and memory.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;

use anyhow::Result;

/// The path of a shared library this process has loaded, found by its file name.
pub fn loaded_library(file_name: &str) -> Option<PathBuf> {
    struct Search<'a> {
        file_name: &'a str,
        found: Option<PathBuf>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> c_int {
        let name = (*info).dlpi_name;
        if name.is_null() {
            return 0;
        }
        let search = &mut *(data as *mut Search);
        let path = PathBuf::from(CStr::from_ptr(name).to_string_lossy().as_ref());
        if path.file_name().is_some_and(|n| n == search.file_name) {
            search.found = Some(path);
            return 1;
        }
        0
    }
    let mut search = Search { file_name, found: None };
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut libc::c_void) };
    search.found
}

/// The directory of the libtorch_cpu.so this process has loaded.
fn loaded_libtorch_dir() -> Option<PathBuf> {
    loaded_library("libtorch_cpu.so")?.parent().map(|p| p.to_path_buf())
}

/// The version string in torch/version.py beside the loaded libtorch (`2.11.0+cu130`).
pub fn libtorch_version() -> Option<String> {
    let lib = loaded_libtorch_dir()?;
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
}

/// Name and total memory of CUDA device `index`, through the driver API (libcuda.so.1, which
/// the CUDA runtime has loaded once CUDA was initialised).
fn cuda_device(index: i32) -> Option<(String, u64)> {
    unsafe {
        let lib = CString::new("libcuda.so.1").ok()?;
        let handle = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let sym = |name: &str| {
            let n = CString::new(name).ok()?;
            let p = libc::dlsym(handle, n.as_ptr());
            (!p.is_null()).then_some(p)
        };
        let init: extern "C" fn(u32) -> c_int = std::mem::transmute(sym("cuInit")?);
        let get: extern "C" fn(*mut c_int, c_int) -> c_int = std::mem::transmute(sym("cuDeviceGet")?);
        let name: extern "C" fn(*mut c_char, c_int, c_int) -> c_int = std::mem::transmute(sym("cuDeviceGetName")?);
        let total: extern "C" fn(*mut usize, c_int) -> c_int = std::mem::transmute(sym("cuDeviceTotalMem_v2")?);
        if init(0) != 0 {
            return None;
        }
        let mut device: c_int = 0;
        if get(&mut device, index) != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 256];
        let mut bytes: usize = 0;
        if name(buf.as_mut_ptr(), buf.len() as c_int, device) != 0 || total(&mut bytes, device) != 0 {
            return None;
        }
        Some((CStr::from_ptr(buf.as_ptr()).to_string_lossy().to_string(), bytes as u64))
    }
}

pub fn report() -> Result<Vec<String>> {
    let mut lines = vec![format!("moontune   {}", env!("CARGO_PKG_VERSION"))];
    let cuda = tch::Cuda::is_available();
    lines.push(format!("libtorch   {}", libtorch_version().unwrap_or_else(|| "unknown (torch/version.py not found)".into())));
    if let Some(dir) = loaded_libtorch_dir() {
        lines.push(format!("           loaded from {}", dir.display()));
    }
    let lua = mlua::Lua::new();
    lines.push(format!("lua        {}", lua.globals().get::<String>("_VERSION")?));
    lines.push(format!("threads    {} (intra-op), {} (inter-op)", tch::get_num_threads(), tch::get_num_interop_threads()));
    if cuda {
        let count = tch::Cuda::device_count();
        lines.push(format!("cuda       available: {count} device(s), cudnn {}", tch::Cuda::cudnn_is_available()));
        let memory = crate::tensor::cuda_memory::per_device();
        for i in 0..count {
            let used = memory.get(i as usize).map(|(a, r)| format!(", PyTorch allocated {} MiB / reserved {} MiB", a >> 20, r >> 20)).unwrap_or_default();
            match cuda_device(i as i32) {
                Some((name, bytes)) => lines.push(format!("  cuda:{i}   {name}, {:.1} GiB{used}", bytes as f64 / (1u64 << 30) as f64)),
                None => lines.push(format!("  cuda:{i}   (name and memory unavailable){used}")),
            }
        }
    } else {
        lines.push("cuda       not available (CPU only)".into());
    }
    // Without libtorch_cuda.so in the process CUDA reads as unavailable even on a GPU machine;
    // it is loaded at start-up only where there is an NVIDIA driver (src/tensor/cuda_runtime.rs).
    let cuda_lib = loaded_library("libtorch_cuda.so").map(|p| p.display().to_string());
    let state = match cuda_lib {
        Some(p) => format!("loaded ({p})"),
        None if !crate::tensor::cuda_runtime::has_nvidia_driver() => "not loaded: no NVIDIA driver on this machine (loaded at start-up where there is one)".into(),
        None => "NOT loaded: CUDA cannot work".into(),
    };
    lines.push(format!("           libtorch_cuda.so {state}"));
    Ok(lines)
}
