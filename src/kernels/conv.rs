//! Fast CPU convolution for the VGG family, as candle custom ops.
//!
//! Stride 1, square kernel `k`, zero padding `pad <= k - 1`, NCHW, f32. The forward pass is im2col over chunks
//! of output positions followed by one gemm per chunk (the `gemm` crate, whose AVX-512 kernels the `x86-v4`
//! feature turns on), with the bias and the ReLU fused into the pass that stores the chunk. Chunks run in
//! parallel on rayon's pool, each with its own column buffer (kept per thread between calls). With
//! `--precision bf16` ([`Algo::Bf16`]) the columns are packed into bf16 pairs and multiplied on the bf16 kernel.
//!
//! Backward:
//! - the ReLU mask is one pass (`dy * (y > 0)`);
//! - the input gradient is the same forward kernel run on `dy` with the kernel flipped and transposed and
//!   padding `k - 1 - pad` (stride 1 makes that exact), and it is skipped when the input needs no gradient
//!   (the first trainable layer after a frozen prefix);
//! - the weight gradient is `dW += dY_chunk · colsᵀ` per chunk, accumulated per thread and summed; the bias
//!   gradient is the sum of `dy`.
//!
//! On other devices, other dtypes or other geometries, and with `Kernels::Portable`, [`conv2d`] is candle's own
//! `conv2d` + bias + ReLU (the portable twin).

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, TensorId};
use rayon::prelude::*;

use super::bf16::{self, Bf16Kernel, PackedA};
use super::direct::DirectWeights;
use super::geom::{dims4, slice_of, store_act};
pub use super::geom::{supported, ConvGeom, Epilogue};
pub use super::plan::Algo;
use super::plan::{forward_plan, ConvPlan, Forward};
use super::pool::{max_pool2d, max_pool_planes};
use super::precision::portable_product;
use super::raw::{sgemm, stored_by, Out, SendPtr};
use super::{Compute, Kernels, Precision};

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Positions `p0 .. p0 + len` of one image.
    Within { img: usize, p0: usize, len: usize },
    /// Whole images `img0 .. img0 + count`.
    Images { img0: usize, count: usize },
}

impl Chunk {
    fn start_col(&self, p: usize) -> usize {
        match *self {
            Chunk::Within { img, p0, .. } => img * p + p0,
            Chunk::Images { img0, .. } => img0 * p,
        }
    }
    fn cols(&self, p: usize) -> usize {
        match *self {
            Chunk::Within { len, .. } => len,
            Chunk::Images { count, .. } => count * p,
        }
    }
}

/// Bytes of column buffer aimed at per chunk. Measured on VGG16 layers (2-core Zen 4): narrow layers (64
/// outputs) want the buffer near L2 size, wide ones (512) a few MiB so the weights are packed less often; about
/// 8 KiB per output channel fits both. `CATDOG_CONV_CHUNK_KB` overrides it for benchmarks.
fn chunk_bytes(o: usize) -> usize {
    super::overrides::KernelOverrides::current()
        .conv_chunk_kb
        .map(|kb| kb * 1024)
        .unwrap_or((o * 8 * 1024).clamp(512 * 1024, 8 * 1024 * 1024))
}

/// Splits the `n * p` output columns into chunks of about the same width: wide enough for gemm to run at
/// speed, narrow enough that the column buffer stays near the cache, and enough of them to feed every thread.
fn plan_chunks(g: &ConvGeom, threads: usize) -> Vec<Chunk> {
    let p = g.p();
    let total = g.n * p;
    let t_max = (chunk_bytes(g.o) / (4 * g.kk())).clamp(256, 8192);
    let t_min = 256usize.min(t_max);
    let t = (total / (4 * threads.max(1))).clamp(t_min, t_max);
    let mut chunks = Vec::new();
    if p >= t {
        let per_img = p.div_ceil(t);
        let base = p / per_img;
        let extra = p % per_img;
        for img in 0..g.n {
            let mut p0 = 0;
            for i in 0..per_img {
                let len = base + usize::from(i < extra);
                chunks.push(Chunk::Within { img, p0, len });
                p0 += len;
            }
        }
    } else {
        let per = (t / p).max(1);
        let mut img0 = 0;
        while img0 < g.n {
            let count = per.min(g.n - img0);
            chunks.push(Chunk::Images { img0, count });
            img0 += count;
        }
    }
    chunks
}

/// A run of output positions inside one output row.
#[derive(Debug, Clone, Copy)]
struct Seg {
    img: usize,
    oy: usize,
    ox0: usize,
    ox1: usize,
    j: usize,
}

fn segments(g: &ConvGeom, start: usize, t: usize, segs: &mut Vec<Seg>) {
    segs.clear();
    let p = g.p();
    let (mut j, mut col) = (0, start);
    while j < t {
        let img = col / p;
        let q = col % p;
        let oy = q / g.wo;
        let ox0 = q % g.wo;
        let len = (g.wo - ox0).min(t - j);
        segs.push(Seg {
            img,
            oy,
            ox0,
            ox1: ox0 + len,
            j,
        });
        j += len;
        col += len;
    }
}

/// `cols[r * t + j]` = input value under kernel tap `r = (ci, ky, kx)` for output column `j` of the chunk.
fn im2col(x: &[f32], g: &ConvGeom, segs: &[Seg], t: usize, cols: &mut [f32]) {
    let (c, h, w, k, pad) = (g.c, g.h as isize, g.w as isize, g.k, g.pad as isize);
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let r = (ci * k + ky) * k + kx;
                let row = &mut cols[r * t..(r + 1) * t];
                let off = kx as isize - pad;
                for s in segs {
                    let dst = &mut row[s.j..s.j + (s.ox1 - s.ox0)];
                    let iy = s.oy as isize + ky as isize - pad;
                    if iy < 0 || iy >= h {
                        dst.fill(0.0);
                        continue;
                    }
                    let base = ((s.img * c + ci) * g.h + iy as usize) * g.w;
                    let src = &x[base..base + g.w];
                    let lo = (s.ox0 as isize).max(-off).min(s.ox1 as isize);
                    let hi = (s.ox1 as isize).min(w - off).max(lo);
                    let (a, b) = ((lo - s.ox0 as isize) as usize, (hi - s.ox0 as isize) as usize);
                    dst[..a].fill(0.0);
                    dst[a..b].copy_from_slice(&src[(lo + off) as usize..(hi + off) as usize]);
                    dst[b..].fill(0.0);
                }
            }
        }
    }
}

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TMP: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SEGS: RefCell<Vec<Seg>> = const { RefCell::new(Vec::new()) };
}

fn with_buffers<R>(cols_len: usize, tmp_len: usize, f: impl FnOnce(&mut [f32], &mut [f32], &mut Vec<Seg>) -> R) -> R {
    fn grow(v: &mut Vec<f32>, len: usize) {
        if v.len() < len {
            v.resize(len, 0.0);
        }
    }
    COLS.with(|c| {
        TMP.with(|t| {
            SEGS.with(|s| match (c.try_borrow_mut(), t.try_borrow_mut(), s.try_borrow_mut()) {
                (Ok(mut c), Ok(mut t), Ok(mut s)) => {
                    grow(&mut c, cols_len);
                    grow(&mut t, tmp_len);
                    f(&mut c[..cols_len], &mut t[..tmp_len], &mut s)
                }
                // Re-entered on this thread (rayon work stealing inside a parallel gemm): private buffers.
                _ => f(&mut vec![0.0; cols_len], &mut vec![0.0; tmp_len], &mut Vec::new()),
            })
        })
    })
}

fn parallelism(nchunks: usize, threads: usize) -> (bool, gemm::Parallelism) {
    // Enough chunks: one chunk per task, single-threaded gemm. Few chunks: chunks in turn, gemm in parallel.
    if nchunks >= 2 * threads || threads == 1 {
        (true, gemm::Parallelism::None)
    } else {
        (false, gemm::Parallelism::Rayon(threads))
    }
}

/// Forward convolution: `out[n, o, y, x] = act(b[o] + Σ w[o, c, ky, kx] · x[n, c, y + ky - pad, x + kx - pad])`.
/// `weight` is `O × C × k × k`, `out` is `N × O × Ho × Wo`.
pub fn conv_forward(x: &[f32], g: &ConvGeom, weight: &[f32], bias: Option<&[f32]>, relu: bool, out: &mut [f32]) {
    conv_forward_with(Algo::Fp32, x, g, weight, bias, relu, out)
}

/// [`conv_forward`] with an explicit algorithm. Stores every value of `out`, which need not be initialised.
pub fn conv_forward_with<'o>(
    algo: Algo,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    out: impl Into<Out<'o>>,
) {
    let mut out = out.into();
    let epilogue = Epilogue {
        bias,
        relu,
        pool: false,
    };
    if !kernel_forward(algo, None, x, g, weight, epilogue, &mut out) {
        im2col_forward_as(algo, x, g, weight, bias, relu, out.zeroed())
    }
}

/// The forward on the first-layer, direct or Winograd kernel, as [`forward_plan`] decides for `algo` and `g`
/// (with the packed bf16 weights kept in `cache` when one is given), or false when the plan is im2col (the
/// caller runs it).
fn kernel_forward(
    algo: Algo,
    cache: Option<&(TensorId, Arc<WeightCache>)>,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    epi: Epilogue,
    out: &mut Out,
) -> bool {
    let plan = forward_plan(algo, g);
    match plan.forward {
        Forward::FirstConv => {
            let bf16 = plan.bf16.is_some();
            super::first_conv::forward(x, g, weight, epi, bf16, out.reborrow());
        }
        Forward::Direct(kernel) => direct_forward(kernel, cache, x, g, weight, epi, out),
        Forward::WinogradF2 | Forward::WinogradF3 | Forward::WinogradF4 => {
            winograd_forward(&plan, cache, x, g, weight, epi, out)
        }
        Forward::Im2col => return false,
    }
    true
}

/// The forward of a conv + bias + ReLU + 2×2/2 max-pool (floor mode), fused where a kernel can, else im2col and
/// a separate pool. `out` is N × O × ⌊Ho/2⌋ × ⌊Wo/2⌋; every value is stored, so it need not be initialised.
pub fn conv_relu_pool_forward_with<'o>(
    algo: Algo,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: &[f32],
    out: impl Into<Out<'o>>,
) {
    pooled_forward(algo, None, x, g, weight, bias, out.into())
}

/// [`conv_relu_pool_forward_with`] with the packed bf16 weights kept in `cache` when one is given.
fn pooled_forward(
    algo: Algo,
    cache: Option<&(TensorId, Arc<WeightCache>)>,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: &[f32],
    mut out: Out,
) {
    let bias = Some(bias);
    let epilogue = Epilogue {
        bias,
        relu: true,
        pool: true,
    };
    if !kernel_forward(algo, cache, x, g, weight, epilogue, &mut out) {
        let mut full = vec![0f32; g.n * g.o * g.p()];
        im2col_forward_as(algo, x, g, weight, bias, true, &mut full);
        max_pool_planes(&full, g.ho, g.wo, 2, 2, out.zeroed());
    }
}

/// The direct bf16 forward on `kernel` (with the packed weights kept in `cache` when one is given).
fn direct_forward(
    kernel: Bf16Kernel,
    cache: Option<&(TensorId, Arc<WeightCache>)>,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    epi: Epilogue,
    out: &mut Out,
) {
    let pack = || Packed::Direct(DirectWeights::pack(kernel, weight, g.o, g.c));
    let packed = match cache {
        Some((id, cache)) => cache.packed(*id, kernel, true, pack),
        None => Arc::new(pack()),
    };
    let Packed::Direct(weights) = &*packed else {
        unreachable!("the cache gives back what `pack` made for this kernel")
    };
    super::direct::forward(kernel, x, g, weights, epi, out.reborrow());
}

/// The im2col forward in the precision `algo` asks for: bf16 products on its kernel, f32 otherwise.
fn im2col_forward_as(
    algo: Algo,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    match algo {
        Algo::Bf16(kernel) => {
            let packed = PackedA::pack(weight, g.o, g.kk());
            im2col_forward(x, g, weight, bias, relu, Some((kernel, &packed)), out)
        }
        Algo::Fp32 | Algo::Im2col => im2col_forward(x, g, weight, bias, relu, None, out),
    }
}

/// The Winograd forward the plan chose — F(2×2) in f32 or bf16 (with the packed weights kept in `cache` when
/// one is given), F(3×3) or F(4×4) in f32.
fn winograd_forward(
    plan: &ConvPlan,
    cache: Option<&(TensorId, Arc<WeightCache>)>,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    epi: Epilogue,
    out: &mut Out,
) {
    match (plan.forward, plan.bf16, cache) {
        (_, Some(kernel), Some((id, cache))) => {
            let pack = || Packed::Winograd(super::winograd_f2::pack_weights_bf16(weight, g.o, g.c));
            match &*cache.packed(*id, kernel, false, pack) {
                Packed::Winograd(blocks) => {
                    super::winograd_f2::forward_bf16_packed(kernel, x, g, blocks, epi, out.reborrow())
                }
                Packed::Direct(_) => unreachable!("the cache gives back what `pack` made"),
            }
        }
        (_, Some(kernel), None) => super::winograd_f2::forward_bf16(kernel, x, g, weight, epi, out.reborrow()),
        (Forward::WinogradF3, None, _) => super::winograd_f3::forward(x, g, weight, epi, out.reborrow()),
        (Forward::WinogradF4, None, _) => super::winograd_f4::forward(x, g, weight, epi, out.reborrow()),
        _ => super::winograd_f2::forward(x, g, weight, epi, out.reborrow()),
    }
}

/// The weights of an im2col forward in bf16: the kernel, and the weights (O × C·k²) packed as its A.
type Bf16Weights<'a> = (Bf16Kernel, &'a PackedA);

/// The im2col forward: per chunk of output columns, the patches as columns and one gemm — in f32, or with `bf16`
/// the columns packed into bf16 pairs and multiplied on the bf16 kernel (products accumulated in f32).
fn im2col_forward(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    bf16: Option<Bf16Weights>,
    out: &mut [f32],
) {
    let (p, kk, o) = (g.p(), g.kk(), g.o);
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(weight.len(), o * kk);
    assert_eq!(out.len(), g.n * o * p);
    if let Some((_, packed)) = bf16 {
        assert!(
            packed.m == o && packed.k == kk,
            "im2col bf16: packed weights are not {o}×{kk}"
        );
    }
    let threads = rayon::current_num_threads();
    let chunks = plan_chunks(g, threads);
    let (par_chunks, par) = parallelism(chunks.len(), threads);
    let outp = SendPtr::new(out);
    let run = |ch: &Chunk| {
        let t = ch.cols(p);
        let via_tmp = bf16.is_some() || matches!(ch, Chunk::Images { .. });
        with_buffers(kk * t, if via_tmp { o * t } else { 0 }, |cols, tmp, segs| {
            segments(g, ch.start_col(p), t, segs);
            im2col(x, g, segs, t, cols);
            match (bf16, *ch) {
                (Some((kernel, packed)), _) => {
                    B_COLS.with(|b| {
                        let mut b = b.borrow_mut();
                        bf16::pack_b(cols, kk, t, t, &mut b);
                        bf16::gemm(kernel, packed, &b, t, tmp, t);
                    });
                    store_chunk(outp, g, ch, tmp, bias, relu);
                }
                (None, _) => {
                    // A chunk within one image is computed in place (rows p apart in `out`), whole images into tmp.
                    let (dst, rs) = match *ch {
                        Chunk::Within { img, p0, .. } if !via_tmp => (outp.get().wrapping_add(img * o * p + p0), p),
                        _ => (tmp.as_mut_ptr(), t),
                    };
                    // SAFETY: in place, the o rows of t values at img·o·p + oc·p + p0 (p0 + t ≤ p) lie inside `out`
                    // (n·o·p, asserted) and belong to this chunk alone; else tmp is this task's o × t buffer.
                    // weight (o × kk, asserted) and cols (kk × t, with_buffers) are only read.
                    unsafe {
                        sgemm(
                            o,
                            t,
                            kk,
                            dst,
                            rs as isize,
                            false,
                            weight.as_ptr(),
                            1,
                            kk as isize,
                            cols.as_ptr(),
                            1,
                            t as isize,
                            par,
                        )
                    };
                    if via_tmp {
                        store_chunk(outp, g, ch, tmp, bias, relu);
                    } else {
                        for oc in 0..o {
                            // SAFETY: row oc of this chunk in `out`, as for the gemm above.
                            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(oc * p), t) };
                            let b = bias.map_or(0.0, |b| b[oc]);
                            if b != 0.0 || relu {
                                for v in row.iter_mut() {
                                    *v += b;
                                    if relu && *v < 0.0 {
                                        *v = 0.0;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
    };
    if par_chunks {
        chunks.par_iter().for_each(run);
    } else {
        chunks.iter().for_each(run);
    }
}

thread_local! {
    /// The bf16-packed columns of an im2col chunk.
    static B_COLS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// A chunk's columns of `dy` (N × O × P) as o rows of t values in `tmp`: the transpose of [`store_chunk`].
fn gather_chunk(dy: &[f32], g: &ConvGeom, ch: &Chunk, tmp: &mut [f32]) {
    let (o, p, t) = (g.o, g.p(), ch.cols(g.p()));
    let (img0, p0, len, count) = match *ch {
        Chunk::Within { img, p0, len } => (img, p0, len, 1),
        Chunk::Images { img0, count } => (img0, 0, p, count),
    };
    for oc in 0..o {
        for i in 0..count {
            let s = ((img0 + i) * o + oc) * p + p0;
            tmp[oc * t + i * len..][..len].copy_from_slice(&dy[s..s + len]);
        }
    }
}

crate::kernels::simd::dispatch! {
    /// Every value rounded to the nearest bf16 (kept as f32).
    fn round_all(values: &mut [f32]) => round_all_body
}

#[inline(always)]
fn round_all_body(values: &mut [f32]) {
    for v in values {
        *v = bf16::round(*v);
    }
}

/// Writes a chunk's o × t products (`tmp`, row stride t) to its place in `out` (N × O × P, behind `outp`), with
/// the bias and the ReLU.
fn store_chunk(outp: SendPtr, g: &ConvGeom, ch: &Chunk, tmp: &[f32], bias: Option<&[f32]>, relu: bool) {
    let (o, p, t) = (g.o, g.p(), ch.cols(g.p()));
    assert!(tmp.len() >= o * t, "im2col: chunk products are short");
    // The chunk's columns are positions p0 .. p0 + len of one image, or whole images img0 .. img0 + count.
    let (img0, p0, len, count) = match *ch {
        Chunk::Within { img, p0, len } => (img, p0, len, 1),
        Chunk::Images { img0, count } => (img0, 0, p, count),
    };
    for i in 0..count {
        for oc in 0..o {
            // SAFETY: `outp` is the N × O × P output the caller asserted; img0 + i < n and p0 + len ≤ p by the
            // chunk plan, so the row lies inside it; chunks cover disjoint (image, position) ranges, so no other
            // task writes it.
            let dst = unsafe { outp.row(((img0 + i) * o + oc) * p + p0, len) };
            let b = bias.map_or(0.0, |b| b[oc]);
            store_act(dst, &tmp[oc * t + i * len..][..len], b, relu);
        }
    }
}

/// Input gradient: `dx = conv(dy, flip(wᵀ), pad = k - 1 - pad)`. `dy` is `N × O × Ho × Wo`, `dx` is `N × C × H × W`.
pub fn conv_input_grad(dy: &[f32], g: &ConvGeom, weight: &[f32], dx: &mut [f32]) {
    conv_input_grad_with(Algo::Fp32, dy, g, weight, dx)
}

/// [`conv_input_grad`] with an explicit algorithm.
pub fn conv_input_grad_with(algo: Algo, dy: &[f32], g: &ConvGeom, weight: &[f32], dx: &mut [f32]) {
    let (c, o, k) = (g.c, g.o, g.k);
    assert_eq!(weight.len(), o * c * k * k);
    let gt = ConvGeom::new(g.n, o, g.ho, g.wo, c, k, k - 1 - g.pad);
    if let Algo::Bf16(kernel) = algo {
        if super::direct::chosen(kernel, &gt) {
            return super::direct::input_grad(kernel, dy, g, weight, dx);
        }
    }
    if let (Algo::Bf16(kernel), true) = (algo, algo.use_winograd(&gt)) {
        return super::winograd_f2::input_grad_bf16(kernel, dy, &gt, weight, dx);
    }
    // The weights of the transposed convolution: O and C swapped, each kernel turned 180°. One input channel per
    // task (its C·k² row of the result is contiguous); this ran on one thread before, 2.4M values a step for a
    // 512-channel layer.
    let kk = k * k;
    let mut wf = vec![0f32; weight.len()];
    wf.par_chunks_mut(o * kk).enumerate().for_each(|(ci, row)| {
        for (oc, kernel) in row.chunks_exact_mut(kk).enumerate() {
            let src = &weight[(oc * c + ci) * kk..][..kk];
            for (d, s) in kernel.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    });
    debug_assert_eq!((gt.ho, gt.wo), (g.h, g.w));
    conv_forward_with(algo, dy, &gt, &wf, None, false, dx);
}

/// Weight and bias gradients: `dw[o, r] = Σ_n Σ_p dy[n, o, p] · cols[r, p]`, `db[o] = Σ dy[n, o, ·]`.
pub fn conv_weight_grad(x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    conv_weight_grad_with(Algo::Fp32, x, g, dy, dw, db)
}

/// [`conv_weight_grad`] with an explicit algorithm (Winograd for 3×3 kernels with 8+ channels on both sides).
pub fn conv_weight_grad_with(algo: Algo, x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    // Measured on VGG16 layers: in f32 on AVX-512 CPUs, F(3×3)'s weight gradient wins on every layer from 9 pixels
    // (`winograd_f3::weight_grad_chosen`); elsewhere F(2×2)'s wins from 256 channels on both sides and below, its
    // transforms cost more than the flops it saves. The bf16 one with channel-vectorised transforms wins on every
    // layer from block1_conv2 on (docs/performance.md).
    match algo {
        Algo::Bf16(kernel) if algo.use_winograd(g) && super::winograd_weight_grad::applicable(g) => {
            super::winograd_weight_grad::weight_grad(kernel, x, g, dy, dw, db)
        }
        Algo::Fp32 if algo.use_winograd(g) && super::winograd_f3::weight_grad_chosen(g) => {
            super::winograd_f3::weight_grad(x, g, dy, dw, db)
        }
        _ if !(algo.use_winograd(g) && g.c >= 256 && g.o >= 256) => {
            im2col_weight_grad(x, g, dy, matches!(algo, Algo::Bf16(_)), dw, db)
        }
        Algo::Bf16(kernel) => super::winograd_f2::weight_grad_bf16(kernel, x, g, dy, dw, db),
        _ => super::winograd_f2::weight_grad(x, g, dy, dw, db),
    }
}

/// The im2col weight gradient; with `bf16_inputs` the input patches and the output gradient are rounded to bf16
/// first (the gemm's f32 sums of their products are then autocast's arithmetic: these layers are too narrow for
/// the bf16 Winograd kernel to pay).
fn im2col_weight_grad(x: &[f32], g: &ConvGeom, dy: &[f32], bf16_inputs: bool, dw: &mut [f32], db: &mut [f32]) {
    let (p, kk, o) = (g.p(), g.kk(), g.o);
    assert_eq!(x.len(), g.n * g.c * g.h * g.w);
    assert_eq!(dy.len(), g.n * o * p);
    assert_eq!(dw.len(), o * kk);
    assert_eq!(db.len(), o);
    let threads = rayon::current_num_threads();
    let chunks = plan_chunks(g, threads);
    let groups = threads.min(chunks.len()).max(1);
    let par = if groups == 1 && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let per = chunks.len().div_ceil(groups);
    let mut partials: Vec<Vec<f32>> = (0..groups).map(|_| Vec::new()).collect();
    partials.par_iter_mut().enumerate().for_each(|(gi, acc)| {
        let mine = &chunks[(gi * per).min(chunks.len())..((gi + 1) * per).min(chunks.len())];
        if mine.is_empty() {
            return;
        }
        *acc = vec![0f32; o * kk];
        let mut first = true;
        for ch in mine {
            let t = ch.cols(p);
            let via_tmp = bf16_inputs || matches!(ch, Chunk::Images { .. });
            with_buffers(kk * t, if via_tmp { o * t } else { 0 }, |cols, tmp, segs| {
                segments(g, ch.start_col(p), t, segs);
                im2col(x, g, segs, t, cols);
                let (lhs, lhs_rs) = match *ch {
                    Chunk::Within { img, p0, .. } if !via_tmp => (dy[img * o * p + p0..].as_ptr(), p),
                    _ => {
                        gather_chunk(dy, g, ch, tmp);
                        (tmp.as_ptr(), t)
                    }
                };
                if bf16_inputs {
                    // Autocast's arithmetic: both factors rounded to bf16, their products (exact in f32) summed
                    // in f32 by the gemm.
                    round_all(cols);
                    round_all(&mut tmp[..o * t]);
                }
                // SAFETY: acc (o × kk) is this task's own; lhs is o rows of t values with row stride lhs_rs, inside
                // dy (rows img·o·p + oc·p + p0 .. + len with p0 + len ≤ p, dy.len() = n·o·p asserted) or inside
                // tmp (o × t); cols is kk × t (with_buffers).
                unsafe {
                    sgemm(
                        o,
                        kk,
                        t,
                        acc.as_mut_ptr(),
                        kk as isize,
                        !first,
                        lhs,
                        1,
                        lhs_rs as isize,
                        cols.as_ptr(),
                        t as isize,
                        1,
                        par,
                    );
                }
            });
            first = false;
        }
    });
    dw.fill(0.0);
    for acc in partials.iter().filter(|a| !a.is_empty()) {
        dw.par_iter_mut().zip(acc.par_iter()).for_each(|(d, a)| *d += a);
    }
    db.par_iter_mut().enumerate().for_each(|(oc, d)| {
        let mut s = 0f64;
        for img in 0..g.n {
            let row = &dy[(img * o + oc) * p..(img * o + oc + 1) * p];
            s += row.iter().map(|&v| v as f64).sum::<f64>();
        }
        *d = s as f32;
    });
}

// ---------------------------------------------------------------------------------------------------------
// candle glue

/// Conv + bias (+ ReLU) as one op with a backward pass.
struct ConvOp {
    pad: usize,
    relu: bool,
    algo: Algo,
}

impl ConvOp {
    fn geom(&self, lx: &Layout, lw: &Layout) -> candle_core::Result<ConvGeom> {
        let (n, c, h, w) = dims4(lx, "input")?;
        let (o, c2, k, k2) = dims4(lw, "weight")?;
        if c != c2 || k != k2 {
            candle_core::bail!("fast conv: input {:?} does not fit weight {:?}", lx.dims(), lw.dims());
        }
        Ok(ConvGeom::new(n, c, h, w, o, k, self.pad))
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "catdog-conv2d"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(lx, lw)?;
        let (x, w, b) = (
            slice_of(sx, lx, "input")?,
            slice_of(sw, lw, "weight")?,
            slice_of(sb, lb, "bias")?,
        );
        if b.len() != g.o {
            candle_core::bail!("fast conv: bias has {} values for {} output channels", b.len(), g.o);
        }
        // SAFETY: conv_forward_with stores every value of its output (see `Out`).
        let out = unsafe {
            stored_by(g.output_len(false), |out| {
                conv_forward_with(self.algo, x, &g, w, Some(b), self.relu, out)
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dy = if self.relu {
            grad.apply_op2_no_bwd(res, &ReluMask)?
        } else {
            grad
        };
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(
                w,
                &ConvInputGradOp {
                    pad: self.pad,
                    algo: self.algo,
                },
            )?)
        } else {
            None
        };
        let (dw, db) = if w.track_op() || b.track_op() {
            let packed = x.apply_op2_no_bwd(
                &dy,
                &ConvWeightGradOp {
                    k: w.dim(2)?,
                    pad: self.pad,
                    algo: self.algo,
                },
            )?;
            let nw = w.elem_count();
            let dw = packed.narrow(0, 0, nw)?.reshape(w.shape())?;
            let db = packed.narrow(0, nw, b.elem_count())?;
            (w.track_op().then_some(dw), b.track_op().then_some(db))
        } else {
            (None, None)
        };
        Ok((dx, dw, db))
    }
}

/// `dy * (y > 0)`.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "catdog-relu-mask"
    }
    fn cpu_fwd(
        &self,
        sd: &CpuStorage,
        ld: &Layout,
        sy: &CpuStorage,
        ly: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (dy, y) = (slice_of(sd, ld, "grad")?, slice_of(sy, ly, "output")?);
        let mut out = vec![0f32; dy.len()];
        out.par_chunks_mut(1 << 14)
            .zip(dy.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
            .for_each(|(o, (d, y))| {
                for ((o, d), y) in o.iter_mut().zip(d).zip(y) {
                    *o = if *y > 0.0 { *d } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(out), ld.shape().clone()))
    }
}

struct ConvInputGradOp {
    pad: usize,
    algo: Algo,
}

impl CustomOp2 for ConvInputGradOp {
    fn name(&self) -> &'static str {
        "catdog-conv2d-input-grad"
    }
    fn cpu_fwd(
        &self,
        sd: &CpuStorage,
        ld: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o, ho, wo) = dims4(ld, "grad")?;
        let (o2, c, k, _) = dims4(lw, "weight")?;
        if o != o2 {
            candle_core::bail!("fast conv grad: {:?} does not fit weight {:?}", ld.dims(), lw.dims());
        }
        let (h, w) = (ho + k - 1 - 2 * self.pad, wo + k - 1 - 2 * self.pad);
        let g = ConvGeom::new(n, c, h, w, o, k, self.pad);
        let mut dx = vec![0f32; n * c * h * w];
        conv_input_grad_with(
            self.algo,
            slice_of(sd, ld, "grad")?,
            &g,
            slice_of(sw, lw, "weight")?,
            &mut dx,
        );
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

struct ConvWeightGradOp {
    k: usize,
    pad: usize,
    algo: Algo,
}

impl CustomOp2 for ConvWeightGradOp {
    fn name(&self) -> &'static str {
        "catdog-conv2d-weight-grad"
    }
    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sd: &CpuStorage,
        ld: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(lx, "input")?;
        let (_, o, _, _) = dims4(ld, "grad")?;
        let g = ConvGeom::new(n, c, h, w, o, self.k, self.pad);
        let nw = o * g.kk();
        let mut out = vec![0f32; nw + o];
        let (dw, db) = out.split_at_mut(nw);
        conv_weight_grad_with(
            self.algo,
            slice_of(sx, lx, "input")?,
            &g,
            slice_of(sd, ld, "grad")?,
            dw,
            db,
        );
        Ok((CpuStorage::F32(out), Shape::from(nw + o)))
    }
}

/// The algorithm of catdog's CPU op for `compute`; `None` for the portable twin.
fn own_algo(compute: Compute) -> Option<Algo> {
    if compute.precision == Precision::Fp16 {
        return None;
    }
    match compute.kernels {
        Kernels::Fast => Some(compute.bf16_kernel().map_or(Algo::Fp32, Algo::Bf16)),
        Kernels::Im2col => Some(Algo::Im2col),
        Kernels::Portable => None,
    }
}

/// The plan of catdog's CPU forward for `compute` and `g` (what [`conv2d`] runs on the CPU); `None` for the
/// portable twin, which is candle's.
pub fn plan(compute: Compute, g: &ConvGeom) -> Option<super::plan::ConvPlan> {
    own_algo(compute).map(|algo| forward_plan(algo, g))
}

/// 2-D convolution, stride 1, with bias and optional ReLU: `x` is NCHW, `w` OIHW, `b` O.
///
/// `compute` is the kernels, or the kernels and the precision: with bf16, the portable twin casts the
/// convolution's inputs to bf16 and its output back to f32 (autocast), and catdog's own op runs its products in
/// bf16 where the CPU can.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    relu: bool,
    compute: impl Into<Compute>,
) -> candle_core::Result<Tensor> {
    let compute = compute.into();
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let algo = own_algo(compute);
    let fast = x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && b.dtype() == DType::F32
        && w.dim(3)? == k
        && supported(k, pad, h, wd);
    match algo {
        Some(algo) if fast => x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, ConvOp { pad, relu, algo }),
        _ => {
            let y = portable_product(x, w, compute.precision, |x, w| x.conv2d(w, pad, 1, 1, 1))?;
            let y = y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?;
            if relu {
                y.relu()
            } else {
                Ok(y)
            }
        }
    }
}

/// The bf16-packed weights of a frozen layer (for Winograd or the direct convolution, whichever runs it), made on
/// first use and kept while the weight tensor is the same (its id is the key; frozen tensors never change):
/// transforming and packing a 512 × 512 layer for Winograd on every batch would be a tenth of a batch-32 forward.
/// Kept only for `--precision bf16` (52 MB for the whole VGG16 base with
/// Winograd, 29 MB direct); fp32 transforms each call rather than hold 105 MB more.
#[derive(Debug, Default)]
pub struct WeightCache(std::sync::Mutex<Option<(TensorId, Bf16Kernel, Arc<Packed>)>>);

/// Weights packed for one bf16 convolution.
#[derive(Debug)]
enum Packed {
    /// The 16 transformed blocks of the Winograd products.
    Winograd(Vec<PackedA>),
    /// The direct convolution's O × 9·C.
    Direct(DirectWeights),
}

impl Packed {
    fn is_direct(&self) -> bool {
        matches!(self, Packed::Direct(_))
    }
}

impl WeightCache {
    /// The weights of tensor `id` packed by `make` for `kernel` (for the direct convolution when `direct`, for
    /// Winograd's otherwise): kept from an earlier call for the same tensor, kernel and convolution.
    fn packed(&self, id: TensorId, kernel: Bf16Kernel, direct: bool, make: impl FnOnce() -> Packed) -> Arc<Packed> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((have, k, packed)) = &*slot {
            if (*have, *k, packed.is_direct()) == (id, kernel, direct) {
                return packed.clone();
            }
        }
        let packed = Arc::new(make());
        debug_assert_eq!(packed.is_direct(), direct);
        *slot = Some((id, kernel, packed.clone()));
        packed
    }
}

/// Conv + bias + ReLU + 2×2/2 max-pool as one op without a backward pass (the frozen part of the network): on the
/// Winograd path the pre-pool activation is never written.
struct ConvPoolOp {
    pad: usize,
    algo: Algo,
    /// Where to keep the packed bf16 weights, and the weight tensor's id.
    cache: Option<(TensorId, Arc<WeightCache>)>,
}

impl CustomOp3 for ConvPoolOp {
    fn name(&self) -> &'static str {
        "catdog-conv2d-relu-maxpool"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = ConvOp {
            pad: self.pad,
            relu: true,
            algo: self.algo,
        }
        .geom(lx, lw)?;
        let (x, w, b) = (
            slice_of(sx, lx, "input")?,
            slice_of(sw, lw, "weight")?,
            slice_of(sb, lb, "bias")?,
        );
        if b.len() != g.o {
            candle_core::bail!("fast conv: bias has {} values for {} output channels", b.len(), g.o);
        }
        let (ph, pw) = (g.ho / 2, g.wo / 2);
        let cache = self.cache.as_ref();
        // SAFETY: pooled_forward stores every value of its output (see `Out`).
        let out = unsafe {
            stored_by(g.output_len(true), |out| {
                pooled_forward(self.algo, cache, x, &g, w, b, out)
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.o, ph, pw))))
    }
}

/// Conv (stride 1) + bias + ReLU + max-pool 2×2/2 without gradient tracking. Falls back to the separate ops off
/// the CPU.
pub fn conv2d_relu_pool(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    compute: impl Into<Compute>,
) -> candle_core::Result<Tensor> {
    conv2d_relu_pool_cached(x, w, b, pad, compute, None)
}

/// [`conv2d_relu_pool`] that keeps the packed bf16 weights in `cache` between calls (for frozen weights).
pub fn conv2d_relu_pool_cached(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pad: usize,
    compute: impl Into<Compute>,
    cache: Option<&Arc<WeightCache>>,
) -> candle_core::Result<Tensor> {
    let compute = compute.into();
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let algo = own_algo(compute);
    let cpu = x.device().is_cpu() && x.dtype() == DType::F32 && w.dim(3)? == k && supported(k, pad, h, wd);
    match algo {
        Some(algo) if cpu => x.contiguous()?.apply_op3_no_bwd(
            &w.contiguous()?,
            &b.contiguous()?,
            &ConvPoolOp {
                pad,
                algo,
                cache: cache.map(|c| (w.id(), c.clone())),
            },
        ),
        _ => max_pool2d(&conv2d(x, w, b, pad, true, compute)?, 2, 2, compute.kernels),
    }
}
