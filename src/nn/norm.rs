//! Batch and layer normalization (between a Dense layer and its activation), with Keras' or PyTorch's defaults.

use std::cell::RefCell;

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Normalization after each hidden Dense layer (before its activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    None,
    Batch,
    Layer,
}

/// Whose defaults the normalization layers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormDefaults {
    /// Keras: batch-norm momentum 0.99 (running = 0.99·running + 0.01·batch), ε 1e-3 (also layer norm).
    #[default]
    Keras,
    /// PyTorch: momentum 0.1 (running = 0.9·running + 0.1·batch, unbiased variance), ε 1e-5.
    Torch,
}

impl NormDefaults {
    /// (weight of the running value, ε).
    pub fn params(self) -> (f64, f64) {
        match self {
            NormDefaults::Keras => (0.99, 1e-3),
            NormDefaults::Torch => (0.9, 1e-5),
        }
    }
}

/// One normalization layer: learned scale and shift, and (batch norm) running statistics for inference.
pub struct NormLayer {
    pub kind: Norm,
    pub gamma: Var,
    pub beta: Var,
    running_mean: RefCell<Tensor>,
    running_var: RefCell<Tensor>,
    keep: f64,
    eps: f64,
    unbiased: bool,
}

impl NormLayer {
    /// A fresh layer over `units` (γ 1, β 0, running mean 0 and variance 1); `None` for [`Norm::None`].
    pub fn new(kind: Norm, defaults: NormDefaults, units: usize, device: &Device) -> Result<Option<Self>> {
        if kind == Norm::None {
            return Ok(None);
        }
        let (keep, eps) = defaults.params();
        Ok(Some(NormLayer {
            kind,
            gamma: Var::from_tensor(&Tensor::ones(units, DType::F32, device)?)?,
            beta: Var::from_tensor(&Tensor::zeros(units, DType::F32, device)?)?,
            running_mean: RefCell::new(Tensor::zeros(units, DType::F32, device)?),
            running_var: RefCell::new(Tensor::ones(units, DType::F32, device)?),
            keep,
            eps,
            unbiased: defaults == NormDefaults::Torch,
        }))
    }

    /// The running mean and variance (batch norm's inference statistics).
    pub fn running_stats(&self) -> [Tensor; 2] {
        [self.running_mean.borrow().clone(), self.running_var.borrow().clone()]
    }

    pub fn set_running_stats(&self, mean: &Tensor, var: &Tensor) {
        *self.running_mean.borrow_mut() = mean.clone();
        *self.running_var.borrow_mut() = var.clone();
    }

    /// Normalizes `z` `[N, units]`; `train` uses (and updates the running values from) the batch statistics.
    pub fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let n = self;
        let zn = match n.kind {
            Norm::Batch => {
                let (mean, var) = if train {
                    let mean = z.mean_keepdim(0)?;
                    let var = z.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
                    let rows = z.dim(0)? as f64;
                    let stat_var = if n.unbiased && rows > 1.0 {
                        (var.detach() * (rows / (rows - 1.0)))?
                    } else {
                        var.detach()
                    };
                    let rm = n.running_mean.borrow().clone();
                    let rv = n.running_var.borrow().clone();
                    *n.running_mean.borrow_mut() = ((rm * n.keep)? + (mean.detach().squeeze(0)? * (1.0 - n.keep))?)?;
                    *n.running_var.borrow_mut() = ((rv * n.keep)? + (stat_var.squeeze(0)? * (1.0 - n.keep))?)?;
                    (mean, var)
                } else {
                    (
                        n.running_mean.borrow().unsqueeze(0)?,
                        n.running_var.borrow().unsqueeze(0)?,
                    )
                };
                z.broadcast_sub(&mean)?.broadcast_div(&(var + n.eps)?.sqrt()?)?
            }
            Norm::Layer => {
                let mean = z.mean_keepdim(D::Minus1)?;
                let c = z.broadcast_sub(&mean)?;
                let var = c.sqr()?.mean_keepdim(D::Minus1)?;
                c.broadcast_div(&(var + n.eps)?.sqrt()?)?
            }
            Norm::None => return Ok(z.clone()),
        };
        Ok(zn
            .broadcast_mul(n.gamma.as_tensor())?
            .broadcast_add(n.beta.as_tensor())?)
    }
}
