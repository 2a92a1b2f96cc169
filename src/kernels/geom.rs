//! What every convolution kernel shares: the geometry of a call, the bias + ReLU store of its outputs, and the
//! reading of candle's CPU storage as the kernels' slices.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};

/// Geometry of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    pub fn new(n: usize, c: usize, h: usize, w: usize, o: usize, k: usize, pad: usize) -> Self {
        let ho = h + 2 * pad + 1 - k;
        let wo = w + 2 * pad + 1 - k;
        ConvGeom {
            n,
            c,
            h,
            w,
            o,
            k,
            pad,
            ho,
            wo,
        }
    }
    /// Output positions per image.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// Length of one patch (the gemm reduction dimension).
    pub fn kk(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Values of the forward output: N × O × ho × wo, or with the 2×2/2 pool N × O × ⌊ho/2⌋ × ⌊wo/2⌋.
    pub fn output_len(&self, pool: bool) -> usize {
        if pool {
            self.n * self.o * (self.ho / 2) * (self.wo / 2)
        } else {
            self.n * self.o * self.p()
        }
    }

    /// The checks every forward kernel (`who`) makes before its unsafe writes rely on them: the input, bias and
    /// output lengths fit this geometry. Panics when one does not.
    pub(super) fn check_forward(&self, who: &str, x: &[f32], bias: Option<&[f32]>, out_len: usize, pool: bool) {
        let g = self;
        assert_eq!(x.len(), g.n * g.c * g.h * g.w, "{who}: input does not fit {g:?}");
        assert!(bias.is_none_or(|b| b.len() == g.o), "{who}: bias does not fit {g:?}");
        assert_eq!(
            out_len,
            g.output_len(pool),
            "{who}: output does not fit {g:?} (pool {pool})"
        );
    }

    /// Multiply-adds × 2 of the forward pass.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.o * self.p()) as f64 * self.kk() as f64
    }
}

/// What a forward does with its sums before it stores them: add the bias, apply the ReLU, and max-pool 2×2/2.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    pub pool: bool,
}

impl<'a> Epilogue<'a> {
    pub fn new(bias: Option<&'a [f32]>, relu: bool, pool: bool) -> Self {
        Epilogue { bias, relu, pool }
    }
}

impl Epilogue<'static> {
    /// The sums stored as they are: no bias, no ReLU, no pooling.
    pub const NONE: Self = Epilogue {
        bias: None,
        relu: false,
        pool: false,
    };
}

/// True when the fast path can run this geometry.
pub fn supported(k: usize, pad: usize, h: usize, w: usize) -> bool {
    k >= 1 && pad < k && h + 2 * pad >= k && w + 2 * pad >= k
}

/// Writes `src + b` (then the ReLU when `relu`) into `dst`.
#[inline]
pub(super) fn store_act(dst: &mut [MaybeUninit<f32>], src: &[f32], b: f32, relu: bool) {
    if relu {
        for (d, s) in dst.iter_mut().zip(src) {
            d.write((s + b).max(0.0));
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            d.write(s + b);
        }
    }
}

/// The f32 values a contiguous tensor's layout `l` covers in `s` (`what` names it in the error).
pub(super) fn slice_of<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fast conv: {what} is not contiguous"),
    }
}

/// The four dimensions of a 4-D layout (`what` names it in the error).
pub(super) fn dims4(l: &Layout, what: &str) -> candle_core::Result<(usize, usize, usize, usize)> {
    match *l.dims() {
        [a, b, c, d] => Ok((a, b, c, d)),
        _ => candle_core::bail!("fast conv: {what} must be 4-D, got {:?}", l.dims()),
    }
}
