//! The dense layer `y = x Wᵀ + b` (`W` `[out, in]`, as torch.nn.Linear stores it), shared by the image head and the
//! tabular MLP.

use candle_core::{DType, Device, Tensor, Var};

use super::init::Init;
use crate::error::Result;
use crate::kernels::linear::linear;
use crate::kernels::Compute;

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

    /// `x [N, in]` → `[N, out]`, in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_in(x, Compute::default())
    }

    /// [`Dense::forward`] with the product in `compute`'s precision (bf16 as autocast: the bias stays f32).
    pub fn forward_in(&self, x: &Tensor, compute: Compute) -> Result<Tensor> {
        let y = linear(x, self.weight.as_tensor(), compute)?;
        Ok(y.broadcast_add(self.bias.as_tensor())?)
    }
}
