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
        let w = self.weight.as_tensor();
        // candle's CPU matmul copies a transposed right-hand side to make it contiguous. With a weight larger than
        // the batch (the head's 8192 × 256 against 32 rows) that copy dominated: x · wᵀ took 4.4 ms, (w · xᵀ)ᵀ
        // 0.65 ms, and the weight's gradient comes out contiguous too. Small weights (the labs' MLPs) keep x · wᵀ.
        let y = if w.elem_count() > x.elem_count() {
            w.matmul(&x.t()?)?.t()?
        } else {
            x.matmul(&w.t()?)?
        };
        Ok(y.broadcast_add(self.bias.as_tensor())?)
    }
}
