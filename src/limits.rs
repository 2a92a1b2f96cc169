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

/// One part of a memory estimate: what it is, its bytes, and the flags that make it smaller.
#[derive(Debug, Clone)]
pub struct MemoryPart {
    pub what: String,
    pub bytes: u64,
    /// E.g. "--batch-size or --size".
    pub flags: &'static str,
}

impl MemoryPart {
    pub fn new(what: impl Into<String>, bytes: u64, flags: &'static str) -> MemoryPart {
        MemoryPart {
            what: what.into(),
            bytes,
            flags,
        }
    }
}

/// Refuses work whose estimated memory (the sum of `parts`) exceeds what the machine has available, naming the
/// largest part and the flags that lower it, then every part.
pub fn check_memory(what: &str, parts: &[MemoryPart]) -> Result<()> {
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    check_memory_against(what, parts, avail)
}

/// [`check_memory`] against `avail` bytes (for tests).
pub fn check_memory_against(what: &str, parts: &[MemoryPart], avail: u64) -> Result<()> {
    let estimate = parts.iter().fold(0u64, |sum, p| sum.saturating_add(p.bytes));
    if estimate <= avail {
        return Ok(());
    }
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    let largest = parts
        .iter()
        .max_by_key(|p| p.bytes)
        .expect("an estimate over 0 has a part");
    let all: Vec<String> = parts
        .iter()
        .map(|p| format!("{} {} ({})", p.what, gib(p.bytes), p.flags))
        .collect();
    Err(Error::invalid(format!(
        "{what} needs about {} but this machine has {} available. Most of it is {} ({}): lower {}. (All of it: {}.)",
        gib(estimate),
        gib(avail),
        largest.what,
        gib(largest.bytes),
        largest.flags,
        all.join(", ")
    )))
}

/// The memory of running a VGG16 conv base of `widths` forward without gradients (evaluate, predict, extract,
/// a benchmark's forward): a batch's largest layer with its work buffers, the weights, the kernels' buffers.
/// `weights_flags` names what sets the widths (`--weights` for `random:W1,…`).
pub fn forward_memory(
    widths: &[usize; 5],
    parameters: usize,
    size: u32,
    batch: usize,
    threads: usize,
) -> Vec<MemoryPart> {
    let (peak, _) = vgg_activation_bytes(widths, size as usize, 5);
    let activations = (batch as u64).saturating_mul(peak);
    let standard = *widths == [64, 128, 256, 512, 512];
    vec![
        MemoryPart::new(
            format!("activations for batch {batch} at {size}px"),
            activations,
            if standard {
                "--batch-size or --size"
            } else {
                "--batch-size, --size or the random:W1,… widths of --weights"
            },
        ),
        MemoryPart::new("weights", parameters as u64 * 4, "the random:W1,… widths of --weights"),
        MemoryPart::new(
            format!("kernel buffers for {threads} threads"),
            kernel_scratch_bytes(widths, 5, threads, true),
            "--threads",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_largest_part_and_its_flags() {
        let parts = [
            MemoryPart::new("activations", 3 << 30, "--batch-size or --size"),
            MemoryPart::new("weights", 40 << 30, "the random:W1,… widths of --weights"),
        ];
        let e = check_memory_against("predict", &parts, 8 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("about 43.0 GiB") && e.contains("Most of it is weights (40.0 GiB)"),
            "{e}"
        );
        assert!(e.contains("lower the random:W1,… widths of --weights"), "{e}");
        assert!(check_memory_against("predict", &parts, 64 << 30).is_ok());
        let standard = forward_memory(&[64, 128, 256, 512, 512], 14_714_688, 150, 32, 2);
        assert!(standard[0].flags == "--batch-size or --size" && standard[1].bytes == 14_714_688 * 4);
    }

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
