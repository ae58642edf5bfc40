//! Build script: makes the moontune binary find libtorch on its own.
//!
//! torch-sys (which links libtorch) publishes the libtorch directory it found as
//! `DEP_TCH_LIBTORCH_LIB`; we embed it as an rpath so that the binary runs without
//! LD_LIBRARY_PATH, and as MOONTUNE_LIBTORCH_DIR. `libtorch_cuda.so` is not linked (the linker
//! drops it: nothing references it by symbol); src/tensor/cuda_runtime.rs loads it at start-up
//! on machines with an NVIDIA driver, which spares CPU-only runs its ~235 MB of resident memory.
//! It also lists the Lua standard library (stdlib/) for release builds to embed, and compiles
//! C++ shims against libtorch's headers: shim.cpp (what tch does not bind: foreach and fused
//! optimizer kernels, tensor identity, generators), linear4bit.cpp (the autograd function of a
//! 4-bit linear layer), checkpoint.cpp (gradient checkpointing's autograd function),
//! linear_cross_entropy.cpp (the output head fused with the loss),
//! fused_pointwise.cpp (RMSNorm, the rotary embedding and SwiGLU in single passes), src/dist/c10d.cpp (PyTorch's
//! distributed engine: store, Gloo process group, collectives, Reducer) and, where libtorch has CUDA,
//! the one that reads the CUDA caching allocator's statistics and src/dist/nccl.cpp (the NCCL
//! backend, a shared object of its own that the binary embeds and loads when a run uses NCCL).

use std::path::{Path, PathBuf};

fn main() {
    embed_stdlib();
    link_libtorch();
}

/// Writes `stdlib_files.rs`: an array of (relative path, include_str!) for every stdlib file.
fn embed_stdlib() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("stdlib");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            println!("cargo:rerun-if-changed={}", path.display());
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "lua") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut code = String::from("[\n");
    for path in files {
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        code.push_str(&format!("    ({relative:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    code.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("stdlib_files.rs");
    std::fs::write(out, code).unwrap();
}

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report a libtorch directory; no rpath embedded");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!("cargo:rustc-env=MOONTUNE_LIBTORCH_DIR={lib_dir}");
    build_shim(Path::new(&lib_dir));
    println!("cargo:rustc-check-cfg=cfg(moontune_nccl)");
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-env=MOONTUNE_LIBTORCH_CUDA=1");
        build_cuda_memory(Path::new(&lib_dir));
        build_nccl(Path::new(&lib_dir));
    }
}

/// A C++ build against libtorch's headers (torch/lib → torch/include), as libtorch was built.
fn libtorch_cpp(lib_dir: &Path, source: &str) -> cc::Build {
    let include = lib_dir.parent().expect("torch/lib has a parent").join("include");
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-changed=src/tensor/guarded.h");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file(source);
    build
}

fn build_shim(lib_dir: &Path) {
    libtorch_cpp(lib_dir, "src/tensor/shim.cpp").compile("moontune_shim");
    libtorch_cpp(lib_dir, "src/tensor/linear4bit.cpp").compile("moontune_linear4bit");
    libtorch_cpp(lib_dir, "src/tensor/checkpoint.cpp").compile("moontune_checkpoint");
    // The fused loops (vector_math.h) are written for the optimiser to vectorise: -O3 in every
    // profile, debug builds included; products and sums are never contracted into fused
    // multiply-adds, so that a loop rounds as libtorch's separate kernels do. They split their
    // rows with at::parallel_for, whose OpenMP body is compiled here: -fopenmp, linked to the
    // libgomp that libtorch itself loads (torch/lib), so that both share one thread pool.
    println!("cargo:rerun-if-changed=src/tensor/vector_math.h");
    for (source, name) in [("src/tensor/linear_cross_entropy.cpp", "moontune_linear_cross_entropy"), ("src/tensor/fused_pointwise.cpp", "moontune_fused_pointwise")] {
        libtorch_cpp(lib_dir, source).opt_level(3).flag("-ffp-contract=off").flag("-fopenmp").compile(name);
    }
    println!("cargo:rustc-link-arg=-l:libgomp.so.1");
    build_c10d(lib_dir);
}

/// Compiles the distributed shim. Its Gloo backend needs Gloo's headers (Debian's libgloo-dev,
/// which tools/env.sh installs); without them it builds without Gloo and says so at run time.
/// The build runs again when they appear or change.
fn build_c10d(lib_dir: &Path) {
    let gloo = Path::new("/usr/include/gloo/context.h");
    println!("cargo:rerun-if-changed={}", if gloo.exists() { gloo } else { Path::new("/usr/include") }.display());
    println!("cargo:rerun-if-changed=src/dist/c10d.h");
    libtorch_cpp(lib_dir, "src/dist/c10d.cpp").compile("moontune_c10d");
}

/// Builds src/dist/nccl.cpp (PyTorch's NCCL backend) as a shared object of its own, linked with
/// libtorch_cuda, for the binary to embed and load only when a run uses NCCL
/// (src/dist/nccl.rs): it needs NCCL's headers (the nvidia-nccl wheel beside torch) and CCCL's
/// (nvidia-cuda-cccl, requirements-nodeps.txt); without them there is no NCCL backend.
fn build_nccl(lib_dir: &Path) {
    let nvidia = lib_dir.parent().and_then(Path::parent).expect("torch/lib has two parents").join("nvidia");
    let (cuda_include, nccl_include) = (nvidia.join("cu13/include"), nvidia.join("nccl/include"));
    for header in [nccl_include.join("nccl.h"), cuda_include.join("nv/target")] {
        println!("cargo:rerun-if-changed={}", header.display());
        if !header.exists() {
            return;
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("libmoontune_nccl.so");
    let compiler = libtorch_cpp(lib_dir, "src/dist/nccl.cpp")
        .include(&cuda_include)
        .include(&nccl_include)
        .define("USE_C10D_NCCL", None)
        .define("USE_CUDA", None)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-o"])
        .arg(&out)
        .arg("src/dist/nccl.cpp")
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"])
        .status()
        .expect("the C++ compiler runs");
    assert!(status.success(), "compiling src/dist/nccl.cpp failed");
    println!("cargo:rustc-env=MOONTUNE_NCCL_SO={}", out.display());
    println!("cargo:rustc-cfg=moontune_nccl");
}

/// Compiles the CUDA memory shim, also against the CUDA headers of the nvidia wheels beside
/// torch (torch/lib → site-packages/nvidia/cu13/include; nvidia-cuda-crt brings the crt/ headers
/// cuda_runtime.h needs).
fn build_cuda_memory(lib_dir: &Path) {
    let torch = lib_dir.parent().expect("torch/lib has a parent");
    let cuda_include = torch.parent().expect("torch has a parent").join("nvidia/cu13/include");
    libtorch_cpp(lib_dir, "src/tensor/cuda_memory.cpp").include(&cuda_include).compile("moontune_cuda_memory");
    println!("cargo:rustc-link-lib=c10_cuda");
}
