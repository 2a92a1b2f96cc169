//! Memory reuse between training steps.
//!
//! Every layer of every step allocates its output (up to ~200 MB at batch 32 for block1) and frees the previous
//! one. glibc hands such blocks back to the kernel with munmap and the next step faults every page in again,
//! zero-filled, a fifth of a forward step (docs/performance.md). So large blocks are kept: mmap threshold and trim
//! threshold raised.

/// Raises glibc's mmap and trim thresholds so that freed large blocks are reused. Returns whether both took.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; it takes plain integers and touches no Rust memory.
    unsafe {
        // M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1 (malloc.h).
        let a = libc::mallopt(-3, 1 << 30);
        let b = libc::mallopt(-1, i32::MAX);
        a == 1 && b == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
