//! Bounds on user numbers that would otherwise exhaust the machine, and the memory estimate checked before a run
//! starts. Each limit names its flag in the error.

use crate::error::{Error, Result};

/// Smallest image side: VGG16 halves it five times and must keep at least one pixel.
pub const MIN_SIZE: u32 = 32;
/// Largest image side (1024² × 64 channels × batch is already gigabytes per layer).
pub const MAX_SIZE: u32 = 1024;
/// Largest `--batch-size`.
pub const MAX_BATCH: usize = 4096;
/// Largest hidden layer of the head.
pub const MAX_HIDDEN: usize = 65_536;

/// Checks `--size`.
pub fn check_size(size: u32) -> Result<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(Error::invalid(format!(
            "--size {size} is out of range: use {MIN_SIZE}..={MAX_SIZE} pixels (VGG16 halves the size five times, \
             and larger images cost memory quadratically; the course uses 150)"
        )));
    }
    Ok(())
}

/// Checks `--batch-size`.
pub fn check_batch(batch: usize) -> Result<()> {
    if batch == 0 || batch > MAX_BATCH {
        return Err(Error::invalid(format!(
            "--batch-size {batch} is out of range: use 1..={MAX_BATCH} (the course uses 32)"
        )));
    }
    Ok(())
}

/// Largest `--threads`: four times the cores (more only adds switching and memory).
pub fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Checks `--threads`.
pub fn check_threads(n: usize) -> Result<()> {
    let max = max_threads();
    if n == 0 || n > max {
        return Err(Error::invalid(format!(
            "--threads {n} is out of range: use 1..={max} (four times this machine's {} cores)",
            max / 4
        )));
    }
    Ok(())
}

/// Memory the system can still give, from `/proc/meminfo` (`MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of f32 activations of one image through a VGG16 of these widths at `size`: the largest layer output
/// (what the frozen part needs at its peak, with its input and the convolution's work buffer) and the sum of all
/// layer outputs from `trainable_from` on (what backpropagation keeps, plus as much again for gradients).
pub fn vgg_activation_bytes(widths: &[usize; 5], size: usize, trainable_from_block: usize) -> (u64, u64) {
    let convs = [2usize, 2, 3, 3, 3];
    let (mut peak, mut kept) = (0u64, 0u64);
    let mut side = size;
    for (b, (&w, &n)) in widths.iter().zip(&convs).enumerate() {
        let layer = (w * side * side * 4) as u64;
        // Input + output + an im2col/Winograd buffer of about 2.25× the output (3×3 taps over channels, tiled).
        peak = peak.max(layer * 4);
        if b >= trainable_from_block {
            kept += 2 * (layer * n as u64 + layer / 4);
        }
        side /= 2;
    }
    (peak, kept)
}

/// Bytes the CPU convolution kernels keep for `threads` threads: each thread's chunk buffers (about 10 MiB), and in
/// fp32 when convolutions train (`trainable_from_block` < 5), each thread's weight-gradient sums for the widest
/// trainable layer (F(3×3, 3×3): 25 per kernel, 26 MB at 512 × 512; the bf16 weight gradient sums once per call).
/// Measured peak memory (VGG16, 150 px, batch 32, 1 against 8 threads, AMD EPYC): 9 MB more per thread in extract
/// mode, 33 MB in fp32 fine-tuning of block5, 4 MB in bf16.
pub fn kernel_scratch_bytes(widths: &[usize; 5], trainable_from_block: usize, threads: usize, fp32: bool) -> u64 {
    const CHUNK_BUFFERS: u64 = 10 << 20;
    let widest_trainable = (trainable_from_block..5)
        .map(|b| widths[b] * widths[b].max(if b > 0 { widths[b - 1] } else { 3 }))
        .max()
        .unwrap_or(0);
    let sums = if fp32 { 25 * widest_trainable as u64 * 4 } else { 0 };
    threads as u64 * (CHUNK_BUFFERS + sums)
}

/// Refuses a run whose estimated memory exceeds what the machine has available, with the estimate and the flags
/// that lower it.
pub fn check_memory(what: &str, estimate: u64, parts: &str) -> Result<()> {
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    if estimate > avail {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::invalid(format!(
            "{what} needs about {:.1} GiB ({parts}) but this machine has {:.1} GiB available: lower --batch-size or \
             --size, the cache budgets (--feature-cache-mb, --image-cache-mb), or --threads",
            gib(estimate),
            gib(avail)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_scratch_grows_with_threads_and_counts_fp32_weight_gradient_sums_only_when_convolutions_train() {
        let vgg = [64, 128, 256, 512, 512];
        let buffers = 10u64 << 20;
        // Extract mode: no convolution trains, only the chunk buffers.
        assert_eq!(kernel_scratch_bytes(&vgg, 5, 8, true), 8 * buffers);
        // fp32 fine-tuning of block5: 25 sums per 512 × 512 kernel per thread.
        let sums = 25 * 512 * 512 * 4;
        assert_eq!(kernel_scratch_bytes(&vgg, 4, 1, true), buffers + sums);
        assert_eq!(kernel_scratch_bytes(&vgg, 4, 64, true), 64 * (buffers + sums));
        // From block2 on, the widest trainable layer is still 512 × 512; block1 alone is 64 × 64.
        assert_eq!(kernel_scratch_bytes(&vgg, 1, 1, true), buffers + sums);
        assert_eq!(
            kernel_scratch_bytes(&[64, 8, 8, 8, 8], 0, 1, true),
            buffers + 25 * 64 * 64 * 4
        );
        // bf16 sums once per call, not per thread.
        assert_eq!(kernel_scratch_bytes(&vgg, 4, 8, false), 8 * buffers);
    }
}
