//! Heap settings for tensor work. A forward or backward pass frees megabytes of activations and
//! allocates them again a moment later; with glibc's defaults the freed top of the heap goes
//! back to the kernel (trimming) and comes back as fresh pages that the kernel must zero, which
//! took 8% of a 95M-parameter Llama's forward pass here (perf: clear_page_erms). Keeping freed
//! memory for reuse (up to `TRIM_BYTES` at the top of the heap, allocations below `MMAP_BYTES`
//! from the heap) removes that cost; the resident set stays near its peak instead of shrinking
//! between steps. A user who sets glibc's own MALLOC_* variables keeps them. After a large
//! one-off release, `release_free_memory` returns what is free.

/// Allocations at least this large are mapped and unmapped on their own (glibc's own ceiling
/// for its adaptive threshold).
const MMAP_BYTES: i32 = 32 << 20;
/// Free memory at the top of the heap kept before it is returned to the kernel: a few passes'
/// worth of activations, without holding on to much more (larger values bought no speed here
/// and raised stories260K's peak RSS by about 60 MiB).
const TRIM_BYTES: i32 = 64 << 20;

/// Applies the settings above (glibc only; elsewhere nothing changes).
pub fn tune_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"));
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_BYTES);
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_BYTES);
            }
        }
    }
}

/// Hands the heap's free memory back to the kernel (glibc's malloc_trim): after a large one-off
/// release, such as a model's float weights replaced by their 4-bit codes, which would otherwise
/// stay resident below `TRIM_BYTES` of heap top or between live blocks.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
