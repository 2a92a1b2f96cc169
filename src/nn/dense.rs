//! The dense layer `y = x Wᵀ + b` (`W` `[out, in]`, as torch.nn.Linear stores it), shared by the image head and the
//! tabular MLP.

use candle_core::{DType, Device, Tensor, Var};

use super::init::Init;
use crate::error::Result;

/// Dense layer parameters `(weight [out, in], bias [out])`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub weight: Var,
    pub bias: Var,
}

impl Dense {
    /// A layer with its kernel drawn by `init` from `rng` and a zero bias.
    pub fn new(init: Init, inp: usize, out: usize, rng: &mut rand::rngs::StdRng, device: &Device) -> Result<Self> {
        let w = init.sample(inp, out, rng);
        Ok(Dense {
            weight: Var::from_tensor(&Tensor::from_vec(w, (out, inp), device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(out, DType::F32, device)?)?,
        })
    }

    /// `x [N, in]` → `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}
