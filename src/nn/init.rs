//! Weight initialisers of Dense kernels (biases start at 0).

use std::str::FromStr;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Weight initialisation of the Dense kernels (biases start at 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Init {
    Zeros,
    /// N(0, σ²).
    Normal {
        std: f64,
    },
    /// Glorot (Xavier) uniform, Keras' default.
    Glorot,
    /// He normal, σ = √(2 / fan_in) (PyTorch's Kaiming default is the uniform form).
    He,
    /// LeCun normal, σ = √(1 / fan_in) (for SELU).
    Lecun,
}

impl FromStr for Init {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.split_once(':') {
            Some(("normal", v)) => Init::Normal {
                std: v
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0)
                    .ok_or_else(|| Error::invalid(format!("--init {s}: '{v}' is not a standard deviation")))?,
            },
            None if s == "zeros" => Init::Zeros,
            None if s == "normal" => Init::Normal { std: 0.05 },
            None if s == "glorot" => Init::Glorot,
            None if s == "he" => Init::He,
            None if s == "lecun" => Init::Lecun,
            _ => {
                return Err(Error::invalid(format!(
                    "--init {s}: expected zeros, normal:σ, glorot, he or lecun"
                )))
            }
        })
    }
}

impl Init {
    pub fn name(&self) -> String {
        match self {
            Init::Zeros => "zeros".into(),
            Init::Normal { std } => format!("normal:{std}"),
            Init::Glorot => "glorot".into(),
            Init::He => "he".into(),
            Init::Lecun => "lecun".into(),
        }
    }

    /// `fan_in · fan_out` kernel values drawn from `rng`.
    pub fn sample(&self, fan_in: usize, fan_out: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
        let n = fan_in * fan_out;
        let normal = |std: f64, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            let d = Normal::new(0.0, std.max(0.0)).expect("valid normal");
            (0..n).map(|_| d.sample(rng) as f32).collect()
        };
        match *self {
            Init::Zeros => vec![0.0; n],
            Init::Normal { std } => normal(std, rng),
            Init::Glorot => {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                (0..n).map(|_| rng.random_range(-limit..limit) as f32).collect()
            }
            Init::He => normal((2.0 / fan_in as f64).sqrt(), rng),
            Init::Lecun => normal((1.0 / fan_in as f64).sqrt(), rng),
        }
    }
}
