//! The dense layers' product `x · wᵀ` (`x` N × in, `w` out × in, as `nn.Linear` stores it), in the precision
//! asked for: f32, or bf16 as autocast runs a matmul — both factors rounded to bf16, their products summed in
//! f32 — on the bf16 kernel on the CPU, and as candle's bf16 matmul on a GPU. The backward pass is the same
//! arithmetic: `dx = bf16(dy) · bf16(w)` and `dw = bf16(dy)ᵀ · bf16(x)`. fp16 runs candle's ops
//! ([`portable_product`]).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::bf16::{self, Bf16Kernel, PackedA};
use super::geom::slice_of;
use super::precision::portable_product;
use super::Compute;

/// `x · wᵀ` (no bias) for `x` N × in and `w` out × in, in `compute`'s precision.
pub fn linear(x: &Tensor, w: &Tensor, compute: Compute) -> candle_core::Result<Tensor> {
    let own_op = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    match compute.bf16_kernel() {
        Some(kernel) if own_op => x
            .contiguous()?
            .apply_op2(&w.contiguous()?, Bf16Product::Forward(kernel)),
        _ => portable_product(x, w, compute.precision, linear_f32),
    }
}

fn linear_f32(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    // candle's CPU matmul copies a transposed right-hand side to make it contiguous. With a weight larger than the
    // batch (the head's 8192 × 256 against 32 rows) that copy dominated, so (w · xᵀ)ᵀ is computed instead, and
    // the weight's gradient comes out contiguous too. Small weights (the labs' MLPs) keep x · wᵀ.
    if w.elem_count() > x.elem_count() {
        w.matmul(&x.t()?)?.t()
    } else {
        x.matmul(&w.t()?)
    }
}

/// The three products of a bf16 dense layer, on the bf16 kernel (rows of C spread over rayon's threads).
#[derive(Clone, Copy)]
enum Bf16Product {
    /// `y = x · wᵀ` (the forward pass; its backward is the two below).
    Forward(Bf16Kernel),
    /// `dx = dy · w`.
    InputGrad(Bf16Kernel),
    /// `dw = dyᵀ · x`.
    WeightGrad(Bf16Kernel),
}

fn dims2(l: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    match *l.dims() {
        [a, b] => Ok((a, b)),
        _ => candle_core::bail!("bf16 dense: {what} must be 2-D, got {:?}", l.dims()),
    }
}

impl CustomOp2 for Bf16Product {
    fn name(&self) -> &'static str {
        match self {
            Bf16Product::Forward(_) => "catdog-linear-bf16",
            Bf16Product::InputGrad(_) => "catdog-linear-bf16-input-grad",
            Bf16Product::WeightGrad(_) => "catdog-linear-bf16-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (d1, d2) = (dims2(l1, "left operand")?, dims2(l2, "right operand")?);
        let (v1, v2) = (slice_of(s1, l1, "left operand")?, slice_of(s2, l2, "right operand")?);
        // A (m × k) packed in rows, B (k × n) packed in columns, C = A · B (m × n).
        let mut b = Vec::new();
        let (a, (m, n)) = match *self {
            Bf16Product::Forward(_) => {
                let ((rows, k), (out, k2)) = (d1, d2);
                check(k == k2, d1, d2)?;
                bf16::pack_b_transposed(v2, k, out, &mut b);
                (PackedA::pack(v1, rows, k), (rows, out))
            }
            Bf16Product::InputGrad(_) => {
                let ((rows, out), (out2, k)) = (d1, d2);
                check(out == out2, d1, d2)?;
                bf16::pack_b(v2, out, k, k, &mut b);
                (PackedA::pack(v1, rows, out), (rows, k))
            }
            Bf16Product::WeightGrad(_) => {
                let ((rows, out), (rows2, k)) = (d1, d2);
                check(rows == rows2, d1, d2)?;
                bf16::pack_b(v2, rows, k, k, &mut b);
                let mut dyt = vec![0f32; out * rows];
                for (r, row) in v1.chunks_exact(out).enumerate() {
                    for (j, v) in row.iter().enumerate() {
                        dyt[j * rows + r] = *v;
                    }
                }
                (PackedA::pack(&dyt, out, rows), (out, k))
            }
        };
        let (Bf16Product::Forward(kernel) | Bf16Product::InputGrad(kernel) | Bf16Product::WeightGrad(kernel)) = *self;
        let mut c = vec![0f32; m * n];
        bf16::gemm_parallel(kernel, &a, &b, n, &mut c, n);
        Ok((CpuStorage::F32(c), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Bf16Product::Forward(kernel) = *self else {
            candle_core::bail!("bf16 dense: the gradient ops have no backward pass")
        };
        let dy = grad.contiguous()?;
        let dx = match x.track_op() {
            true => Some(dy.apply_op2_no_bwd(w, &Bf16Product::InputGrad(kernel))?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(dy.apply_op2_no_bwd(x, &Bf16Product::WeightGrad(kernel))?),
            false => None,
        };
        Ok((dx, dw))
    }
}

fn check(fits: bool, d1: (usize, usize), d2: (usize, usize)) -> candle_core::Result<()> {
    if !fits {
        candle_core::bail!("bf16 dense: {d1:?} does not fit {d2:?}");
    }
    Ok(())
}
