//! Max pooling, `k × k` windows, stride `s`, no padding, floor mode (PyTorch's default, Keras' "valid").
//!
//! The fast op is ours on the CPU. Its portable twin is built from candle's reshape and max, not from candle's
//! `max_pool2d`: that op's backward (candle-core 0.11.1, backprop.rs) upsamples the output gradient to the input
//! size, which misroutes it when the input does not divide by the stride (VGG at 150×150 pools 75 → 37 and 9 → 4),
//! and multiplies it by the window's share of maxima (¼ for a single maximum in a 2×2 window) where it should
//! divide. The twin narrows the input to whole windows, lays each window's values along one axis and keeps the
//! first maximum by a one-hot mask of its argmax, so that its backward, like the fast op's and PyTorch's, sends
//! each output's gradient to that one element, ties included (a ReLU output often ties at 0; Grad-CAM reads the
//! gradient there, before the ReLU's own backward would zero it).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::geom::{dims4, slice_of};
use super::Kernels;

pub(crate) fn max_pool_planes(x: &[f32], h: usize, w: usize, k: usize, s: usize, out: &mut [f32]) {
    let (ho, wo) = (pool_out(h, k, s), pool_out(w, k, s));
    if ho * wo == 0 {
        return;
    }
    out.par_chunks_mut(ho * wo).enumerate().for_each(|(plane, o)| {
        let xp = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..ho {
            for ox in 0..wo {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..k {
                    let row = &xp[(oy * s + ky) * w + ox * s..][..k];
                    for &v in row {
                        if v > m || v.is_nan() {
                            m = v;
                        }
                    }
                }
                o[oy * wo + ox] = m;
            }
        }
    });
}

/// Max pooling, kernel `k`, stride `s`, no padding, floor mode, with a backward pass that routes each output's
/// gradient to the first maximum of its window. candle's own max-pool backward assumes that the input size is a
/// multiple of the stride (VGG at 150×150 has 75 → 37 and 9 → 4), so the pool is ours on CPU as well.
struct MaxPoolOp {
    k: usize,
    s: usize,
}

fn pool_out(h: usize, k: usize, s: usize) -> usize {
    if h < k {
        0
    } else {
        (h - k) / s + 1
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "catdog-maxpool2d"
    }
    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(lx, "pool input")?;
        let x = slice_of(sx, lx, "pool input")?;
        let (ho, wo) = (pool_out(h, self.k, self.s), pool_out(w, self.k, self.s));
        let mut out = vec![0f32; n * c * ho * wo];
        max_pool_planes(x, h, w, self.k, self.s, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPoolGradOp { k: self.k, s: self.s },
        )?))
    }
}

struct MaxPoolGradOp {
    k: usize,
    s: usize,
}

impl CustomOp2 for MaxPoolGradOp {
    fn name(&self) -> &'static str {
        "catdog-maxpool2d-grad"
    }
    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(lx, "pool input")?;
        let (_, _, ho, wo) = dims4(lg, "pool grad")?;
        let (x, gr) = (slice_of(sx, lx, "pool input")?, slice_of(sg, lg, "pool grad")?);
        let mut dx = vec![0f32; n * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, d)| {
            let xp = &x[plane * h * w..(plane + 1) * h * w];
            let gp = &gr[plane * ho * wo..(plane + 1) * ho * wo];
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut best = (oy * self.s) * w + ox * self.s;
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            let i = (oy * self.s + ky) * w + ox * self.s + kx;
                            if xp[i] > m {
                                m = xp[i];
                                best = i;
                            }
                        }
                    }
                    d[best] += gp[oy * wo + ox];
                }
            }
        });
        Ok((CpuStorage::F32(dx), lx.shape().clone()))
    }
}

/// Max pooling `k × k`, stride `s`, floor mode, with a backward pass that is right for every input size: the fast
/// CPU op when `kernels` allows it and the input is f32 on the CPU, the portable twin otherwise.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize, kernels: Kernels) -> candle_core::Result<Tensor> {
    if k == 0 || s == 0 {
        candle_core::bail!("max pool: window {k} and stride {s} must be at least 1");
    }
    if kernels.own_ops() && x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(MaxPoolOp { k, s })
    } else {
        portable_max_pool2d(x, k, s)
    }
}

/// The portable twin (see the module comment). Non-overlapping windows (`k == s`, VGG's 2×2/2) only: candle has no
/// strided slice to build overlapping ones from, and its own op, used for them, refuses their backward.
fn portable_max_pool2d(x: &Tensor, k: usize, s: usize) -> candle_core::Result<Tensor> {
    if k != s {
        return x.max_pool2d_with_stride(k, s);
    }
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (pool_out(h, k, s), pool_out(w, k, s));
    if ho == 0 || wo == 0 {
        candle_core::bail!("max pool: a {h}×{w} input is smaller than the {k}×{k} window");
    }
    // A plain max reduction would give the gradient to every tied value (see the module comment).
    let windows = x
        .narrow(2, 0, ho * k)?
        .narrow(3, 0, wo * k)?
        .contiguous()?
        .reshape((n, c, ho, k, wo, k))?
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((n, c, ho, wo, k * k))?;
    let first = windows.detach().argmax_keepdim(4)?;
    let slots = Tensor::arange(0u32, (k * k) as u32, x.device())?.reshape((1, 1, 1, 1, k * k))?;
    let mask = slots.broadcast_eq(&first)?.to_dtype(x.dtype())?;
    (windows * mask)?.sum(4)
}
