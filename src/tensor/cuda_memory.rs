//! CUDA memory per device as PyTorch's caching allocator counts it (allocated and reserved
//! bytes, like torch.cuda.memory_allocated/_reserved), through a small C++ shim
//! (cuda_memory.cpp) that build.rs compiles against libtorch's and the CUDA wheels' headers.
//! Empty when there is no CUDA.

/// (allocated, reserved) bytes of each CUDA device, or nothing without CUDA.
pub fn per_device() -> Vec<(i64, i64)> {
    if !tch::Cuda::is_available() {
        return Vec::new();
    }
    (0..tch::Cuda::device_count() as i32).filter_map(device).collect()
}

fn device(index: i32) -> Option<(i64, i64)> {
    extern "C" {
        fn moontune_cuda_memory(device: i32, allocated: *mut i64, reserved: *mut i64) -> i32;
    }
    let (mut allocated, mut reserved) = (0i64, 0i64);
    // SAFETY: the shim writes two integers and catches every C++ exception.
    let status = unsafe { moontune_cuda_memory(index, &mut allocated, &mut reserved) };
    (status == 0).then_some((allocated, reserved))
}
