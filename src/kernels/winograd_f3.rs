//! Winograd F(3×3, 3×3) in f32: the tile for VGG16's 18×18 and 9×9 layers in the f32 forward, input gradient
//! and weight gradient.
//!
//! Each 3×3 block of outputs comes from a 5×5 input patch with 25 multiplications per channel pair instead of
//! 81: 3.24× fewer than a direct convolution, 1.44× fewer than F(2×2, 3×3) on 18×18 and 1.78× fewer on 9×9,
//! which 3 divides with no ragged tile (F(2×2) covers 9×9 with 10×10, F(4×4) with 12×12). Its 25 blocks of
//! transformed weights are 26 MB at 512 × 512 channels (F(4×4)'s 36 are 38 MB). The matrices are Toom-Cook's
//! for the points 0, 1, −1, 2 and ∞, derived and checked in f64 (`tests` below); the rounding error sits between
//! F(2×2)'s and F(4×4)'s (about 2e-6 of a layer's largest output here). A tile is not a pooling window, so a
//! pooled forward pools its full output separately ([`forward`]). The forward runs on
//! `winograd_tiles::over_chunks`: chunks of tiles, transforms around one gemm per block.

use rayon::prelude::*;

use super::geom::{ConvGeom, Epilogue};
use super::raw::{Out, Pool, SendPtr};
use super::winograd_f2::{grad_products, with_buffers};
use super::winograd_shared::{bias_grad, check_weight_grad, kernels_from_sums, runs, Run};
use super::winograd_tiles::{gather, over_chunks, store_rows, tile_outputs, tile_products, transform_weights_into};

/// Tiles of 3×3 outputs from 5×5 input patches.
const M: usize = 3;
const T: usize = 5;
/// The 25 products.
const K: usize = T * T;

/// True when the f32 forward, input gradient or weight gradient of `g` runs here: 3×3 kernels, 8+ input
/// channels, 9 to 18 outputs across, and AVX-512 for the transforms (the portable ones cost more than the
/// products save). [`super::winograd_f4::chosen`] takes the wider layers; below 9, F(2×2) wastes less.
pub fn chosen(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad <= 2 && g.c >= 8 && (9..=18).contains(&g.ho) && (9..=18).contains(&g.wo) && avx512::available()
}

/// True when the f32 weight gradient of `g` runs here: as [`chosen`], but from 9 outputs across at any size. The
/// weight gradient has no large-tile rival (F(4×4) is forward-only) and its sums are 25 per kernel per thread,
/// small below 512 channels. It beat im2col and F(2×2) on every VGG16 layer from 9 pixels (docs/performance.md).
pub fn weight_grad_chosen(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad <= 2 && g.c >= 8 && g.ho >= 9 && g.wo >= 9 && avx512::available()
}

/// G g: G = [[1/2, 0, 0], [1/2, 1/2, 1/2], [1/6, −1/6, 1/6], [1/6, 1/3, 2/3], [0, 0, 1]].
fn g_times(g: [f32; 3]) -> [f32; T] {
    let (g0, g1, g2) = (g[0], g[1], g[2]);
    [
        g0 / 2.0,
        (g0 + g1 + g2) / 2.0,
        (g0 - g1 + g2) / 6.0,
        g0 / 6.0 + g1 / 3.0 + g2 * (2.0 / 3.0),
        g2,
    ]
}

/// Bᵀ d: Bᵀ = [[2, −1, −2, 1, 0], [0, 2, 1, −1, 0], [0, −2, 3, −1, 0], [0, −1, 0, 1, 0], [0, 2, −1, −2, 1]].
#[inline(always)]
fn bt(d: [f32; T]) -> [f32; T] {
    let (d0, d1, d2, d3, d4) = (d[0], d[1], d[2], d[3], d[4]);
    [
        2.0 * (d0 - d2) + (d3 - d1),
        2.0 * d1 + (d2 - d3),
        3.0 * d2 - 2.0 * d1 - d3,
        d3 - d1,
        2.0 * (d1 - d3) - d2 + d4,
    ]
}

/// Aᵀ m: Aᵀ = [[1, 1, 1, 1, 0], [0, 1, −1, 2, 0], [0, 1, 1, 4, 1]].
#[inline(always)]
fn at(m: [f32; T]) -> [f32; M] {
    let sum = m[1] + m[2];
    [m[0] + sum + m[3], m[1] - m[2] + 2.0 * m[3], sum + 4.0 * m[3] + m[4]]
}

/// The transformed weights (25 · O · C floats), kept for the next call.
static TRANSFORMED: Pool<f32> = Pool::new();

/// Forward convolution with Winograd F(3×3, 3×3), bias and ReLU fused; the contract of
/// [`super::winograd_f2::forward`]. A 3×3 tile is not a pooling window, so with `pool` the full output goes
/// through a scratch buffer and a separate 2×2/2 max-pool (floor mode): at 18×18 and 9×9 that extra pass costs
/// less than F(2×2)'s 1.44–1.78× more products.
///
/// Panics when `g` is not a 3×3 geometry with padding ≤ 2 or a buffer's length does not fit `g`.
pub fn forward<'o>(x: &[f32], g: &ConvGeom, weight: &[f32], epi: Epilogue, out: impl Into<Out<'o>>) {
    let Epilogue { bias, relu, pool } = epi;
    let (simd, out) = (avx512::available(), out.into());
    if !pool {
        return forward_on(simd, x, g, weight, bias, relu, out);
    }
    g.check_forward("Winograd F(3×3)", x, bias, out.len(), true);
    let mut full = UNPOOLED.take(g.output_len(false));
    forward_on(simd, x, g, weight, bias, relu, (&mut full).into());
    // The pooled output is a quarter of the full one, and only block4/block5 take this path: zeroing it first
    // costs little.
    super::pool::max_pool_planes(&full, g.ho, g.wo, 2, 2, out.zeroed());
    UNPOOLED.give(full, 1);
}

/// The unpooled output of a pooled [`forward`], kept for the next call.
static UNPOOLED: Pool<f32> = Pool::new();

/// [`forward`] with the AVX-512 transforms (`simd`, which the CPU must have) or the portable ones.
fn forward_on(simd: bool, x: &[f32], g: &ConvGeom, weight: &[f32], bias: Option<&[f32]>, relu: bool, mut out: Out) {
    assert!(!simd || avx512::available(), "Winograd F(3×3): this CPU lacks AVX-512");
    assert!(
        g.k == 3 && g.pad <= 2 && g.ho >= 1 && g.wo >= 1,
        "Winograd F(3×3): {g:?} is not a 3×3 geometry with padding ≤ 2"
    );
    g.check_forward("Winograd F(3×3)", x, bias, out.len(), false);
    let (c, o) = (g.c, g.o);
    let mut u = TRANSFORMED.take(K * o * c);
    transform_weights_into(weight, (o, c), g_times, &mut u);
    let outp = out.ptr();
    let input = |runs: &[Run], nt: usize, v: &mut [f32]| {
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: available() saw AVX-512 F (asserted above); v holds 25 blocks of c × nt and the runs are a
            // chunk's, inside the batch check_forward measured (over_chunks).
            unsafe {
                avx512::input_transform(x, g, runs, nt, v)
            };
        } else {
            gather(x, (c, g.h, g.w), (M, g.pad), runs, nt, bt, v);
        }
    };
    let output = |m: &[f32], runs: &[Run], nt: usize| {
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for the input transform; m holds 25 blocks of o × nt, and `outp` the output whose length
            // check_forward checked; a chunk's tiles are written by its task alone (over_chunks).
            unsafe {
                avx512::output_transform(m, g, runs, nt, bias, relu, outp)
            };
        } else {
            output_transform(m, g, runs, nt, bias, relu, outp);
        }
    };
    over_chunks(g, (M, K), &u, &input, &output);
    TRANSFORMED.give(u, 1);
}

/// The weight gradient's per-thread sums of the 25 products (25 · O · C floats), kept between calls.
static SUMS: Pool<f32> = Pool::new();

/// Weight and bias gradients by Winograd F(3×3, 3×3): per tile, the transformed input `V = Bᵀ d B` (the
/// forward's) and the transformed output gradient `Ŷ = A dy Aᵀ`; per block k, `S_k (O × C) = Σ_tiles Ŷ_k Vᵀ_k`
/// as one gemm per chunk of tiles; then `dw = Gᵀ S G` for every kernel. `x` is N × C × H × W, `dy`
/// N × O × Ho × Wo, `dw` O × C × 3 × 3, `db` O.
///
/// Panics when `g` is not a 3×3 geometry with padding ≤ 2 or a buffer does not fit it.
pub fn weight_grad(x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    weight_grad_on(avx512::available(), x, g, dy, dw, db)
}

/// [`weight_grad`] with the AVX-512 transforms (`simd`, which the CPU must have) or the portable ones.
fn weight_grad_on(simd: bool, x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    assert!(!simd || avx512::available(), "Winograd F(3×3): this CPU lacks AVX-512");
    assert!(
        g.k == 3 && g.pad <= 2 && g.ho >= 1 && g.wo >= 1,
        "Winograd F(3×3): {g:?} is not a 3×3 geometry with padding ≤ 2"
    );
    check_weight_grad(x, g, dy, dw, db);
    let (c, o) = (g.c, g.o);
    let (th, tw) = (g.ho.div_ceil(M), g.wo.div_ceil(M));
    let total = g.n * th * tw;
    let threads = rayon::current_num_threads().max(1);
    // One run of chunks per thread, each summing into its own 25 · O · C accumulators; chunks of tiles whose
    // transformed input and gradient stay near 8 MiB each.
    let per_thread = total.div_ceil(threads);
    let tc = (8 * 1024 * 1024 / (K * 4 * c.max(o).max(1)))
        .clamp(32, 4096)
        .min(per_thread)
        .max(1);
    let groups = threads.min(total.div_ceil(tc)).max(1);
    let par = if groups == 1 && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let oc_len = o * c;
    let mut partials: Vec<Vec<f32>> = (0..groups).map(|_| SUMS.take(K * oc_len)).collect();
    partials.par_iter_mut().enumerate().for_each(|(gi, acc)| {
        let (first, end) = (gi * total / groups, (gi + 1) * total / groups);
        if first == end {
            // An empty batch: nothing to sum.
            acc.fill(0.0);
            return;
        }
        // No zeroing: the first chunk's products overwrite every value (`accumulate` is false for it).
        for (n, t0) in (first..end).step_by(tc).enumerate() {
            let nt = tc.min(end - t0);
            with_buffers(K * c * nt, K * o * nt, |v, yh| {
                let runs = runs(t0, nt, th, tw);
                if simd {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: available() saw AVX-512 F (asserted above); v holds 25 blocks of c × nt and yh 25 of
                    // o × nt (with_buffers' sizes), the runs lie inside the batch (check_weight_grad).
                    unsafe {
                        avx512::input_transform(x, g, &runs, nt, v);
                        avx512::grad_transform(dy, g, &runs, nt, yh);
                    }
                } else {
                    gather(x, (c, g.h, g.w), (M, g.pad), &runs, nt, bt, v);
                    gather(dy, (o, g.ho, g.wo), (M, 0), &runs, nt, a_times, yh);
                }
                grad_products(yh, v, (o, c, nt), n > 0, par, acc);
            });
        }
    });
    weights_from_sums(&partials, o, c, dw);
    for acc in partials {
        SUMS.give(acc, threads);
    }
    bias_grad(dy, g, db);
}

/// `dw[o][c] = Gᵀ S G` with S the sum over `parts` of the 25 products of kernel (o, c).
fn weights_from_sums(parts: &[Vec<f32>], o: usize, c: usize, dw: &mut [f32]) {
    let parts: Vec<&[f32]> = parts.iter().map(|p| &p[..]).collect();
    kernels_from_sums::<K>(&parts, o, c, dw, |sums| {
        // Gᵀ over the columns of S (per column b), then over the rows of the result.
        let cols: [[f32; 3]; T] = std::array::from_fn(|b| gt_times(std::array::from_fn(|a| sums[a * T + b])));
        let mut kernel = [0f32; 9];
        for (i, row) in kernel.chunks_exact_mut(3).enumerate() {
            row.copy_from_slice(&gt_times(std::array::from_fn(|b| cols[b][i])));
        }
        kernel
    });
}

/// Gᵀ s: Gᵀ = [[1/2, 1/2, 1/6, 1/6, 0], [0, 1/2, −1/6, 1/3, 0], [0, 1/2, 1/6, 2/3, 1]].
fn gt_times(s: [f32; T]) -> [f32; 3] {
    [
        (s[0] + s[1]) / 2.0 + (s[2] + s[3]) / 6.0,
        (s[1] / 2.0 - s[2] / 6.0) + s[3] / 3.0,
        (s[1] / 2.0 + s[2] / 6.0) + (s[3] * (2.0 / 3.0) + s[4]),
    ]
}

/// A g for an output-gradient column (or row) g: A = [[1, 0, 0], [1, 1, 1], [1, −1, 1], [1, 2, 4], [0, 0, 1]].
#[inline(always)]
fn a_times(g: [f32; M]) -> [f32; T] {
    let (g0, g1, g2) = (g[0], g[1], g[2]);
    [g0, g0 + g1 + g2, g0 - g1 + g2, g0 + 2.0 * g1 + 4.0 * g2, g2]
}

// The portable transforms, tile by tile: the reference for the AVX-512 ones.

/// `out[img][oc][3ty + r][3tx + s]` = act(b[oc] + (Aᵀ M A)[r][s]), skipping positions past the output's edge.
fn output_transform(m: &[f32], g: &ConvGeom, runs: &[Run], nt: usize, bias: Option<&[f32]>, relu: bool, outp: SendPtr) {
    let o = g.o;
    let stride = M * runs.iter().map(|r| r.len).max().unwrap_or(0);
    let mut out_rows = vec![0f32; M * stride];
    for oc in 0..o {
        let b = bias.map_or(0.0, |b| b[oc]);
        for run in runs {
            for q in 0..run.len {
                let y = tile_outputs(tile_products::<T>(m, (o, oc), nt, run.t + q), at, b, relu);
                for (r, row) in y.iter().enumerate() {
                    out_rows[r * stride + M * q..][..M].copy_from_slice(row);
                }
            }
            store_rows(&out_rows, stride, (M, g.ho, g.wo), o, (run, oc), outp);
        }
    }
}

/// The transforms in AVX-512 intrinsics, 16 tiles a vector (lane q: tile q of a run); the stride-3 reads and
/// writes are permutes. Plain loops only: a closure would not inherit the AVX-512 of its function.
mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    #[cfg(target_arch = "x86_64")]
    use super::super::winograd_tiles::avx512::{gather, output_tiles, Gather, Side, L};
    use super::{store_rows, ConvGeom, Run, SendPtr, M, T};

    /// True when this CPU runs the AVX-512 transforms.
    pub fn available() -> bool {
        super::super::winograd_input::available_f32()
    }

    /// The input transform: Bᵀ, over 5×5 patches of tiles 3 pixels apart.
    struct Input;

    /// The weight gradient's transform of the output gradient: A, over its 3×3 tiles.
    struct Grad;

    /// The output transform: Aᵀ.
    struct Output;

    #[cfg(target_arch = "x86_64")]
    impl Side<T, T> for Input {
        /// Bᵀ d, 16 tiles at once.
        // SAFETY (callers): needs AVX-512 F; only inlined into the AVX-512 transforms below, whose callers check it.
        #[inline(always)]
        unsafe fn apply(d: [__m512; T]) -> [__m512; T] {
            // SAFETY: only inlined into functions compiled with AVX-512 F, which their callers checked.
            unsafe {
                let two = _mm512_set1_ps(2.0);
                let d31 = _mm512_sub_ps(d[3], d[1]);
                [
                    _mm512_fmadd_ps(two, _mm512_sub_ps(d[0], d[2]), d31),
                    _mm512_fmadd_ps(two, d[1], _mm512_sub_ps(d[2], d[3])),
                    _mm512_sub_ps(
                        _mm512_fmsub_ps(_mm512_set1_ps(3.0), d[2], _mm512_mul_ps(two, d[1])),
                        d[3],
                    ),
                    d31,
                    _mm512_add_ps(
                        _mm512_fnmadd_ps(two, d31, d[4]),
                        _mm512_sub_ps(_mm512_setzero_ps(), d[2]),
                    ),
                ]
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Gather<T, T> for Input {
        const STEP: usize = M;
        const READS: usize = 64;

        // SAFETY (callers): as for `apply`.
        #[inline(always)]
        unsafe fn columns(row: &[f32]) -> [__m512; T] {
            // SAFETY: as for `apply`.
            unsafe { patch_columns(row) }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Side<M, T> for Grad {
        /// A g, 16 tiles at once.
        // SAFETY (callers): as for `Input::apply`.
        #[inline(always)]
        unsafe fn apply(g: [__m512; M]) -> [__m512; T] {
            // SAFETY: as for `Input::apply`.
            unsafe {
                let ends = _mm512_add_ps(g[0], g[2]);
                [
                    g[0],
                    _mm512_add_ps(ends, g[1]),
                    _mm512_sub_ps(ends, g[1]),
                    _mm512_fmadd_ps(
                        _mm512_set1_ps(4.0),
                        g[2],
                        _mm512_fmadd_ps(_mm512_set1_ps(2.0), g[1], g[0]),
                    ),
                    g[2],
                ]
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Gather<M, T> for Grad {
        const STEP: usize = M;
        const READS: usize = 64;

        /// The first 3 of [`patch_columns`]' 5: the tiles' own columns.
        // SAFETY (callers): as for `Input::apply`.
        #[inline(always)]
        unsafe fn columns(row: &[f32]) -> [__m512; M] {
            // SAFETY: as for `Input::apply`.
            let [c0, c1, c2, _, _] = unsafe { patch_columns(row) };
            [c0, c1, c2]
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Side<T, M> for Output {
        /// Aᵀ m, 16 tiles at once.
        // SAFETY (callers): as for `Input::apply`.
        #[inline(always)]
        unsafe fn apply(m: [__m512; T]) -> [__m512; M] {
            // SAFETY: as for `Input::apply`.
            unsafe {
                let sum = _mm512_add_ps(m[1], m[2]);
                [
                    _mm512_add_ps(_mm512_add_ps(m[0], sum), m[3]),
                    _mm512_fmadd_ps(_mm512_set1_ps(2.0), m[3], _mm512_sub_ps(m[1], m[2])),
                    _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(4.0), m[3], sum), m[4]),
                ]
            }
        }
    }

    /// Columns 3q + a (a = 0..5) of 16 tiles' patches from a row of 64 values: for each a, one permute over the
    /// first 32 values and one over the next 32 (a permute reads the low 5 bits of each index), joined by a mask.
    // SAFETY (callers): as for `Input::apply`; the row is checked to hold 64 values.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    unsafe fn patch_columns(row: &[f32]) -> [__m512; T] {
        let row = <&[f32; 64]>::try_from(&row[..64]).expect("64 values");
        // SAFETY: the loads read row[0 .. 64]; the rest as for `Input::apply`.
        unsafe {
            let p = row.as_ptr();
            let z0 = _mm512_loadu_ps(p);
            let z1 = _mm512_loadu_ps(p.add(16));
            let z2 = _mm512_loadu_ps(p.add(32));
            let z3 = _mm512_loadu_ps(p.add(48));
            let base = _mm512_set_epi32(45, 42, 39, 36, 33, 30, 27, 24, 21, 18, 15, 12, 9, 6, 3, 0);
            let mut cols = [z0; T];
            for (a, col) in cols.iter_mut().enumerate() {
                let idx = _mm512_add_epi32(base, _mm512_set1_epi32(a as i32));
                // Lanes whose column 3q + a is 32 or more come from the second pair of registers.
                let high = _mm512_cmpge_epi32_mask(idx, _mm512_set1_epi32(32));
                let lo = _mm512_permutex2var_ps(z0, idx, z1);
                let hi = _mm512_permutex2var_ps(z2, idx, z3);
                *col = _mm512_mask_blend_ps(high, lo, hi);
            }
            cols
        }
    }

    /// `out[3q + s] = y[s][q]`: 3 vectors of 16 tiles into 48 values, tile by tile.
    // SAFETY (callers): as for `Input::apply`; `out` is a checked reference to 48 values.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    unsafe fn interleave3(y: [__m512; M], out: &mut [f32; 48]) {
        // SAFETY: the stores write out[0 .. 48]; the rest as for `Input::apply`.
        unsafe {
            let p = out.as_mut_ptr();
            for part in 0..3 {
                let i01 = _mm512_loadu_si512(INTERLEAVE.from01[part].as_ptr().cast());
                let i2 = _mm512_loadu_si512(INTERLEAVE.from2[part].as_ptr().cast());
                let two = _mm512_permutex2var_ps(y[0], i01, y[1]);
                let all = _mm512_mask_permutexvar_ps(two, INTERLEAVE.lanes2[part], i2, y[2]);
                _mm512_storeu_ps(p.add(16 * part), all);
            }
        }
    }

    /// The permutes of [`interleave3`], per output vector `part`: value v = 16·part + lane is y[v % 3][v / 3];
    /// y0 and y1 come by one two-source permute (index 16·s + q), y2 by a one-source permute over the lanes
    /// where s = 2.
    struct Interleave {
        from01: [[i32; 16]; 3],
        from2: [[i32; 16]; 3],
        lanes2: [u16; 3],
    }

    const INTERLEAVE: Interleave = {
        let mut t = Interleave {
            from01: [[0; 16]; 3],
            from2: [[0; 16]; 3],
            lanes2: [0; 3],
        };
        let mut part = 0;
        while part < 3 {
            let mut lane = 0;
            while lane < 16 {
                let v = 16 * part + lane;
                let (q, s) = ((v / 3) as i32, v % 3);
                if s == 2 {
                    t.from2[part][lane] = q;
                    t.lanes2[part] |= 1 << lane;
                } else {
                    t.from01[part][lane] = 16 * s as i32 + q;
                }
                lane += 1;
            }
            part += 1;
        }
        t
    };

    /// # Safety
    /// The CPU must have AVX-512 F; `v` must hold 25 blocks of C × nt and the runs lie inside the chunk of nt
    /// tiles and the batch of `x` (N × C × H × W of `g`).
    // SAFETY (callers): see "# Safety"; the only caller is `super::forward_on`, which checks it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn input_transform(x: &[f32], g: &ConvGeom, runs: &[Run], nt: usize, v: &mut [f32]) {
        // SAFETY: this function runs with AVX-512 F; v and the runs as the caller promised.
        unsafe { gather::<T, T, Input>(x, (g.c, g.h, g.w), g.pad, runs, nt, v) }
    }

    /// # Safety
    /// The CPU must have AVX-512 F; `yh` must hold 25 blocks of O × nt and the runs lie inside the chunk of nt
    /// tiles and the batch of `dy` (N × O × Ho × Wo of `g`).
    // SAFETY (callers): see "# Safety"; the only caller is `super::weight_grad_on`, which checks it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn grad_transform(dy: &[f32], g: &ConvGeom, runs: &[Run], nt: usize, yh: &mut [f32]) {
        // SAFETY: this function runs with AVX-512 F; yh and the runs as the caller promised.
        unsafe { gather::<M, T, Grad>(dy, (g.o, g.ho, g.wo), 0, runs, nt, yh) }
    }

    /// # Safety
    /// The CPU must have AVX-512 F; `m` must hold 25 blocks of O × nt, the runs lie inside the chunk and the batch,
    /// and `outp` point to the N × O × Ho × Wo output of `g`, of which this chunk's tiles are written by this call
    /// alone.
    // SAFETY (callers): see "# Safety"; the only caller is `super::forward_on`, which checks it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output_transform(
        m: &[f32],
        g: &ConvGeom,
        runs: &[Run],
        nt: usize,
        bias: Option<&[f32]>,
        relu: bool,
        outp: SendPtr,
    ) {
        let o = g.o;
        let padded = runs.iter().map(|r| r.len).max().unwrap_or(0).div_ceil(L) * L;
        let stride = M * padded;
        let mut out_rows = vec![0f32; M * stride];
        for oc in 0..o {
            let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[oc]));
            for run in runs {
                for q0 in (0..run.len).step_by(L) {
                    let l = L.min(run.len - q0);
                    // SAFETY: this function runs with AVX-512 F; output_tiles checks its reads of m.
                    let y = unsafe { output_tiles::<T, M, Output>(m, (o, oc), nt, (run.t + q0, l), b, relu) };
                    for (r, y) in y.into_iter().enumerate() {
                        let dst =
                            <&mut [f32; 48]>::try_from(&mut out_rows[r * stride + M * q0..][..48]).expect("48 values");
                        // SAFETY: as above.
                        unsafe { interleave3(y, dst) };
                    }
                }
                store_rows(&out_rows, stride, (M, g.ho, g.wo), o, (run, oc), outp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::sample_values as noise;
    use crate::kernels::winograd_tiles::tests::{check_forward, paths};

    #[test]
    fn f3x3_equals_the_convolution_to_f32_rounding_at_every_edge_and_padding() {
        // (n, c, h, w, o, pad): sizes that are and are not multiples of 3, runs longer than 16 tiles, padding
        // 0–2, one-pixel images, 9×9 and 18×18 as in VGG16, and enough tiles for several chunks.
        let cases = [
            (2, 8, 9, 9, 8, 1),
            (1, 5, 10, 11, 3, 1),
            (3, 4, 7, 6, 5, 0),
            (1, 3, 10, 13, 4, 2),
            (1, 2, 1, 1, 2, 1),
            (1, 4, 5, 70, 3, 1),
            (5, 9, 18, 18, 10, 1),
            (1, 64, 9, 9, 4, 1),
        ];
        let activations = [(false, false), (true, false), (true, true)];
        let paths = paths("winograd_f3", avx512::available());
        check_forward(&cases, &activations, &paths, |simd, x, g, w, b, (relu, pool), out| {
            if !pool {
                forward_on(simd, x, g, w, Some(b), relu, out.into());
            } else if simd == avx512::available() {
                // The pooled path takes the CPU's transforms.
                forward(x, g, w, Epilogue::new(Some(b), relu, true), out);
            } else {
                return false;
            }
            true
        });
    }

    /// The weight and bias gradients of `sum(y · dy)` in f64.
    fn reference_grads(x: &[f32], g: &ConvGeom, dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (n, c, h, w, o, pad) = (g.n, g.c, g.h, g.w, g.o, g.pad as isize);
        let mut dw = vec![0f64; o * c * 9];
        let mut db = vec![0f64; o];
        for img in 0..n {
            for oc in 0..o {
                for yy in 0..g.ho {
                    for xx in 0..g.wo {
                        let d = f64::from(dy[((img * o + oc) * g.ho + yy) * g.wo + xx]);
                        db[oc] += d;
                        for ci in 0..c {
                            for tap in 0..9 {
                                let (iy, ix) = (
                                    yy as isize + tap as isize / 3 - pad,
                                    xx as isize + tap as isize % 3 - pad,
                                );
                                if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                    let v = x[((img * c + ci) * h + iy as usize) * w + ix as usize];
                                    dw[(oc * c + ci) * 9 + tap] += d * f64::from(v);
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, db)
    }

    #[test]
    fn the_f3x3_weight_gradient_equals_the_f64_one() {
        // (n, c, h, w, o, pad): edges, padding 0–2, runs past 16 tiles, several tiles per thread.
        let cases = [
            (2, 8, 9, 9, 8, 1),
            (1, 5, 10, 11, 3, 1),
            (3, 4, 7, 6, 5, 0),
            (1, 3, 10, 13, 4, 2),
            (1, 2, 1, 1, 2, 1),
            (1, 4, 5, 70, 3, 1),
            (5, 9, 18, 18, 10, 1),
            (0, 8, 9, 9, 8, 1),
            // A block3-sized layer: long sums over many tiles.
            (2, 16, 37, 37, 24, 1),
        ];
        for (i, &(n, c, h, w, o, pad)) in cases.iter().enumerate() {
            let g = ConvGeom::new(n, c, h, w, o, 3, pad);
            let x = noise(n * c * h * w, 1 + i as u64);
            let dy = noise(n * o * g.ho * g.wo, 300 + i as u64);
            let (want_w, want_b) = reference_grads(&x, &g, &dy);
            let scale = want_w.iter().fold(1e-6f64, |s, v| s.max(v.abs()));
            for simd in paths("winograd_f3", avx512::available()) {
                let (mut dw, mut db) = (vec![f32::NAN; o * c * 9], vec![f32::NAN; o]);
                weight_grad_on(simd, &x, &g, &dy, &mut dw, &mut db);
                let worst = dw
                    .iter()
                    .zip(&want_w)
                    .fold(0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
                assert!(
                    dw.iter().all(|v| v.is_finite()),
                    "case {i}: a weight gradient was not written"
                );
                assert!(
                    worst / scale < 1e-5,
                    "case {i} simd {simd}: weight gradient off by {worst} of {scale}"
                );
                for (a, b) in db.iter().zip(&want_b) {
                    assert!(
                        (f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "case {i}: bias gradient {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_weight_gradient_is_chosen_from_9_pixels_at_any_width_of_8_channels_or_more() {
        let simd = avx512::available();
        assert_eq!(weight_grad_chosen(&ConvGeom::new(32, 64, 150, 150, 64, 3, 1)), simd);
        assert_eq!(weight_grad_chosen(&ConvGeom::new(32, 512, 9, 9, 512, 3, 1)), simd);
        assert!(!weight_grad_chosen(&ConvGeom::new(32, 512, 8, 8, 512, 3, 1)));
        assert!(!weight_grad_chosen(&ConvGeom::new(32, 3, 150, 150, 64, 3, 1)));
    }

    #[test]
    fn the_18_and_9_pixel_layers_are_chosen() {
        let simd = avx512::available();
        assert_eq!(chosen(&ConvGeom::new(32, 512, 18, 18, 512, 3, 1)), simd);
        assert_eq!(chosen(&ConvGeom::new(32, 512, 9, 9, 512, 3, 1)), simd);
        assert!(!chosen(&ConvGeom::new(32, 256, 37, 37, 256, 3, 1)));
        assert!(!chosen(&ConvGeom::new(32, 512, 18, 18, 512, 5, 2)));
    }
}
