//! The CPU kernels behind candle custom ops, each with its portable twin.
//!
//! Every op that catdog writes itself for speed (convolution by Winograd or im2col + gemm, the fused
//! conv + ReLU + pool of the frozen layers, max-pooling, the fused optimizer updates) has a twin built only from
//! candle's device-generic tensor ops. The twins are the graph that runs on CUDA, and `--kernels portable` (or
//! `CATDOG_KERNELS=portable`) runs them on the CPU too, so that the GPU's graph is tested where there is no GPU:
//! `tests/portable_parity.rs` holds the two paths to each other on forward values, gradients and whole runs.

pub mod amx;
pub mod bf16;
mod bf16_format;
mod choice;
pub mod conv;
pub mod direct;
pub mod first_conv;
mod geom;
pub mod linear;
pub mod overrides;
pub mod plan;
pub mod pool;
pub mod precision;
pub mod raw;
pub mod simd;
mod transpose;
pub mod winograd_f2;
pub mod winograd_f3;
pub mod winograd_f4;
pub mod winograd_input;
mod winograd_shared;
mod winograd_tiles;
pub mod winograd_weight_grad;

pub use self::choice::Kernels;
pub use self::overrides::{check_env, KernelOverrides};
pub use self::precision::{Compute, Precision, PrecisionChoice};

/// Deterministic values in [−1, 1) (xorshift): the inputs of the kernels' unit tests and of `bench kernels`.
pub(crate) fn sample_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
