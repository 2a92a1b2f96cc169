//! Inverted dropout (Keras' and PyTorch's): in training, each unit is kept with probability 1 − p and scaled by
//! 1 / (1 − p); at inference nothing is dropped. The mask is drawn on the host from a seed, so the same seed gives
//! the same mask on every device and a resumed run draws the masks it would have drawn.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::error::Result;

/// Inverted dropout mask: kept units scaled by 1 / (1 − p).
pub fn dropout_mask(rows: usize, cols: usize, p: f64, seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keep = (1.0 / (1.0 - p)) as f32;
    let m: Vec<f32> = (0..rows * cols)
        .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
        .collect();
    Ok(Tensor::from_vec(m, (rows, cols), device)?)
}
