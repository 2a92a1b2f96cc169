//! Winograd F(4×4, 3×3) in f32: the larger tile for the wide layers of the f32 forward and input gradient.
//!
//! Each 4×4 block of outputs (a tile) comes from a 6×6 input patch with 36 multiplications per (input, output)
//! channel pair instead of 144: 4× fewer than im2col and 1.78× fewer than F(2×2, 3×3) where the image is a
//! whole number of tiles wide. The structure is [`super::winograd_f2`]'s (transforms around 36 gemms
//! `[O, C] × [C, tiles]`, tiles in chunks, in parallel), with Lavin and Gray's matrices for the points 0, ±1, ±2.
//! Its rounding error is a few times F(2×2, 3×3)'s (the transforms' coefficients reach 5 and 1/24), still near f32
//! rounding, so it runs in f32 only: in bf16 the same coefficients would amplify the operands' rounding.
//! [`chosen`] says where it wins.

use super::geom::{ConvGeom, Epilogue};
use super::raw::{Out, Pool, SendPtr};
use super::winograd_shared::Run;
use super::winograd_tiles::{gather, over_chunks, store_rows, tile_outputs, tile_products, transform_weights_into};

/// Tiles of 4×4 outputs from 6×6 input patches.
const T: usize = 6;
/// The 36 products.
const K: usize = T * T;

/// True when F(4×4, 3×3) computes `g`: 3×3 kernels with padding ≤ 2.
pub fn applicable(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad <= 2 && g.ho >= 1 && g.wo >= 1
}

/// True when the f32 forward of `g` runs here rather than on F(2×2, 3×3): on CPUs with AVX-512 (the portable
/// transforms cost more than the products save), from 16 outputs across, and while the 36 blocks of transformed
/// weights stay within 16 MiB.
///
/// Past 16 MiB of weights (block4 and block5's 36 blocks of 512 × 512 are 38 MB, more than an L3) every chunk of
/// tiles streams them again and F(2×2) wins; at 9×9 a 4×4 tile covers 12×12, so the products saved are few.
pub fn chosen(g: &ConvGeom) -> bool {
    const MAX_WEIGHT_BYTES: usize = 16 << 20;
    applicable(g)
        && g.c >= 8
        && g.ho >= 16
        && g.wo >= 16
        && K * g.o * g.c * 4 <= MAX_WEIGHT_BYTES
        && avx512::available()
}

/// G g for a kernel column (or row) g: G = [[1/4, 0, 0], [−1/6, −1/6, −1/6], [−1/6, 1/6, −1/6],
/// [1/24, 1/12, 1/6], [1/24, −1/12, 1/6], [0, 0, 1]].
fn g_times(g: [f32; 3]) -> [f32; T] {
    let (g0, g1, g2) = (g[0], g[1], g[2]);
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

/// Bᵀ d: Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0], [0, 4, −4, −1, 1, 0], [0, −2, −1, 2, 1, 0],
/// [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
#[inline(always)]
fn bt(d: [f32; T]) -> [f32; T] {
    let (d0, d1, d2, d3, d4, d5) = (d[0], d[1], d[2], d[3], d[4], d[5]);
    [
        4.0 * d0 - 5.0 * d2 + d4,
        (d3 + d4) - 4.0 * (d1 + d2),
        (d4 - d3) + 4.0 * (d1 - d2),
        (d4 - d2) + 2.0 * (d3 - d1),
        (d4 - d2) - 2.0 * (d3 - d1),
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// Aᵀ m: Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0], [0, 1, −1, 8, −8, 1]].
#[inline(always)]
fn at(m: [f32; T]) -> [f32; 4] {
    let (sum, diff) = (m[1] + m[2], m[1] - m[2]);
    let (sum2, diff2) = (m[3] + m[4], m[3] - m[4]);
    [
        m[0] + sum + sum2,
        diff + 2.0 * diff2,
        sum + 4.0 * sum2,
        diff + 8.0 * diff2 + m[5],
    ]
}

/// The f32 forward's transformed weights (36 · O · C floats), kept for the next call as in [`super::winograd_f2`].
static TRANSFORMED: Pool<f32> = Pool::new();

/// Forward convolution with Winograd F(4×4, 3×3); the contract of [`super::winograd_f2::forward`] (bias and ReLU
/// fused, and with `pool` a 2×2/2 max-pool in floor mode: `out` is then `N × O × ⌊Ho/2⌋ × ⌊Wo/2⌋`).
///
/// Panics when `g` is not a 3×3 geometry with padding ≤ 2 or a buffer's length does not fit `g`: the unsafe
/// writes below rely on these checks.
pub fn forward<'o>(x: &[f32], g: &ConvGeom, weight: &[f32], epi: Epilogue, out: impl Into<Out<'o>>) {
    let Epilogue { bias, relu, pool } = epi;
    forward_on(avx512::available(), x, g, weight, bias, relu, pool, out.into())
}

/// [`forward`] with the AVX-512 transforms (`simd`, which the CPU must have) or the portable ones.
#[allow(clippy::too_many_arguments)]
fn forward_on(
    simd: bool,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    pool: bool,
    mut out: Out,
) {
    assert!(!simd || avx512::available(), "Winograd F(4×4): this CPU lacks AVX-512");
    assert!(
        applicable(g),
        "Winograd F(4×4): {g:?} is not a 3×3 geometry with padding ≤ 2"
    );
    g.check_forward("Winograd F(4×4)", x, bias, out.len(), pool);
    let (c, o) = (g.c, g.o);
    let mut u = TRANSFORMED.take(K * o * c);
    transform_weights_into(weight, (o, c), g_times, &mut u);
    let outp = out.ptr();
    let input = |runs: &[Run], nt: usize, v: &mut [f32]| {
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: available() saw AVX-512 F (asserted above); v holds 36 blocks of c × nt and the runs are a
            // chunk's, inside the batch check_forward measured (over_chunks).
            unsafe {
                avx512::input_transform(x, g, runs, nt, v)
            };
        } else {
            gather(x, (c, g.h, g.w), (4, g.pad), runs, nt, bt, v);
        }
    };
    let output = |m: &[f32], runs: &[Run], nt: usize| {
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for the input transform; m holds 36 blocks of o × nt, and `outp` the output whose length
            // check_forward checked; a chunk's tiles are written by its task alone (over_chunks).
            unsafe {
                avx512::output_transform(m, g, runs, nt, bias, relu, pool, outp)
            };
        } else {
            output_transform(m, g, runs, nt, bias, relu, pool, outp);
        }
    };
    over_chunks(g, (4, K), &u, &input, &output);
    TRANSFORMED.give(u, 1);
}

// The portable transforms, tile by tile: the reference for the AVX-512 ones (the tests hold both to an f64
// convolution), and the path `forward` takes on CPUs without AVX-512, where `chosen` keeps F(2×2, 3×3).

/// `out[img][oc][4ty + r][4tx + s]` = act(b[oc] + (Aᵀ M A)[r][s]), or with `pool` the maxima of its 2×2 windows;
/// positions past the output's edge are skipped.
#[allow(clippy::too_many_arguments)]
fn output_transform(
    m: &[f32],
    g: &ConvGeom,
    runs: &[Run],
    nt: usize,
    bias: Option<&[f32]>,
    relu: bool,
    pool: bool,
    outp: SendPtr,
) {
    let o = g.o;
    // A run's output rows: 4 rows of 4 values per tile (with pool, 2 rows of 2 per tile).
    let stride = 4 * runs.iter().map(|r| r.len).max().unwrap_or(0);
    let mut out_rows = vec![0f32; 4 * stride];
    for oc in 0..o {
        let b = bias.map_or(0.0, |b| b[oc]);
        for run in runs {
            for q in 0..run.len {
                let y = tile_outputs(tile_products::<T>(m, (o, oc), nt, run.t + q), at, b, relu);
                if pool {
                    for pr in 0..2 {
                        for pc in 0..2 {
                            let (r, s) = (2 * pr, 2 * pc);
                            let top = y[r][s].max(y[r][s + 1]);
                            out_rows[pr * stride + 2 * q + pc] = top.max(y[r + 1][s].max(y[r + 1][s + 1]));
                        }
                    }
                } else {
                    for (r, row) in y.iter().enumerate() {
                        out_rows[r * stride + 4 * q..][..4].copy_from_slice(row);
                    }
                }
            }
            store_run(&out_rows, stride, g, run, oc, pool, outp);
        }
    }
}

/// Writes a run's output rows into plane (img, oc) of the output, clipped at its edges: `out_rows` holds 4 rows
/// of 4 values per tile, or with `pool` 2 rows of 2 values per tile, each row starting at a multiple of `stride`.
fn store_run(out_rows: &[f32], stride: usize, g: &ConvGeom, run: &Run, oc: usize, pool: bool, outp: SendPtr) {
    let (per_tile, ho, wo) = if pool { (2, g.ho / 2, g.wo / 2) } else { (4, g.ho, g.wo) };
    store_rows(out_rows, stride, (per_tile, ho, wo), g.o, (run, oc), outp);
}

/// The transforms in AVX-512 intrinsics, 16 tiles a vector (lane q: tile q of a run): the stride-4 reads of the
/// input patches and the stride-4 writes of the output tiles are permutes. Portable Rust vectorised by the
/// compiler did those value by value and lost most of F(4×4)'s gain; F(4×4, 3×3) runs only where these do
/// ([`chosen`]).
mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    #[cfg(target_arch = "x86_64")]
    use super::super::winograd_tiles::avx512::{gather, output_tiles, Gather, Side, L};
    use super::{ConvGeom, Run, SendPtr, T};

    /// True when this CPU runs the AVX-512 transforms.
    pub fn available() -> bool {
        super::super::winograd_input::available_f32()
    }

    /// The input transform: Bᵀ, over 6×6 patches of tiles 4 pixels apart.
    struct Input;

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
                let (four, five, two) = (_mm512_set1_ps(4.0), _mm512_set1_ps(5.0), _mm512_set1_ps(2.0));
                let d42 = _mm512_sub_ps(d[4], d[2]);
                let d31 = _mm512_sub_ps(d[3], d[1]);
                [
                    _mm512_add_ps(_mm512_fmsub_ps(four, d[0], _mm512_mul_ps(five, d[2])), d[4]),
                    _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4])),
                    _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3])),
                    _mm512_fmadd_ps(two, d31, d42),
                    _mm512_fnmadd_ps(two, d31, d42),
                    _mm512_add_ps(_mm512_fmsub_ps(four, d[1], _mm512_mul_ps(five, d[3])), d[5]),
                ]
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Gather<T, T> for Input {
        const STEP: usize = 4;
        const READS: usize = 80;

        /// Columns 4q + a (a = 0..6) of 16 tiles' patches from a row of 80 values: the 4 phases by two permutes
        /// and a 128-bit shuffle each, columns 4 and 5 as phases 0 and 1 one tile on.
        // SAFETY (callers): as for `apply`; the row is checked to hold 80 values.
        #[inline(always)]
        unsafe fn columns(row: &[f32]) -> [__m512; T] {
            let row = <&[f32; 80]>::try_from(&row[..80]).expect("80 values");
            // SAFETY: the loads read row[0 .. 80]; the rest as for `apply`.
            unsafe {
                let p = row.as_ptr();
                let z0 = _mm512_loadu_ps(p);
                let z1 = _mm512_loadu_ps(p.add(16));
                let z2 = _mm512_loadu_ps(p.add(32));
                let z3 = _mm512_loadu_ps(p.add(48));
                let z4 = _mm512_loadu_ps(p.add(64));
                // Phase a: values a, a + 4, … of 32 from the first two registers in lanes 0–7, of the last two in
                // lanes 0–7 of another, then both halves joined. (No closures here: they would not inherit this
                // function's AVX-512 and the intrinsics would become calls.)
                let mut phases = [z0; 4];
                for (a, phase) in phases.iter_mut().enumerate() {
                    let a = a as i32;
                    let idx = _mm512_add_epi32(
                        _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0),
                        _mm512_set1_epi32(a),
                    );
                    let lo = _mm512_permutex2var_ps(z0, idx, z1);
                    let hi = _mm512_permutex2var_ps(z2, idx, z3);
                    *phase = _mm512_shuffle_f32x4::<0b01_00_01_00>(lo, hi);
                }
                let [p0, p1, p2, p3] = phases;
                let next0 = _mm512_set_epi32(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
                let next1 = _mm512_set_epi32(17, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
                let p4 = _mm512_permutex2var_ps(p0, next0, z4);
                let p5 = _mm512_permutex2var_ps(p1, next1, z4);
                [p0, p1, p2, p3, p4, p5]
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Side<T, 4> for Output {
        /// Aᵀ m, 16 tiles at once.
        // SAFETY (callers): as for `Input::apply`.
        #[inline(always)]
        unsafe fn apply(m: [__m512; T]) -> [__m512; 4] {
            // SAFETY: as for `Input::apply`.
            unsafe {
                let (sum, diff) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
                let (sum2, diff2) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
                [
                    _mm512_add_ps(_mm512_add_ps(m[0], sum), sum2),
                    _mm512_fmadd_ps(_mm512_set1_ps(2.0), diff2, diff),
                    _mm512_fmadd_ps(_mm512_set1_ps(4.0), sum2, sum),
                    _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), diff2, diff), m[5]),
                ]
            }
        }
    }

    /// `out[4q + s] = y[s][q]`: 4 vectors of 16 tiles into 64 values, tile by tile.
    // SAFETY (callers): as for `Input::apply`; `out` is a checked reference to 64 values.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    unsafe fn interleave4(y: [__m512; 4], out: &mut [f32; 64]) {
        // SAFETY: the stores write out[0 .. 64]; the rest as for `Input::apply`.
        unsafe {
            let (a, b) = (_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
            let (c, d) = (_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
            let pd = _mm512_castps_pd;
            let ps = _mm512_castpd_ps;
            // Per 128-bit block k: e = tile 4k, f = 4k + 1, g = 4k + 2, h = 4k + 3, each its 4 values.
            let e = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            let f = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            let g = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            let h = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
            let t0 = _mm512_shuffle_f32x4::<0b01_00_01_00>(e, f);
            let t1 = _mm512_shuffle_f32x4::<0b01_00_01_00>(g, h);
            let t2 = _mm512_shuffle_f32x4::<0b11_10_11_10>(e, f);
            let t3 = _mm512_shuffle_f32x4::<0b11_10_11_10>(g, h);
            let p = out.as_mut_ptr();
            _mm512_storeu_ps(p, _mm512_shuffle_f32x4::<0b10_00_10_00>(t0, t1));
            _mm512_storeu_ps(p.add(16), _mm512_shuffle_f32x4::<0b11_01_11_01>(t0, t1));
            _mm512_storeu_ps(p.add(32), _mm512_shuffle_f32x4::<0b10_00_10_00>(t2, t3));
            _mm512_storeu_ps(p.add(48), _mm512_shuffle_f32x4::<0b11_01_11_01>(t2, t3));
        }
    }

    /// `out[2q + s] = y[s][q]`: 2 vectors of 16 tiles into 32 values.
    // SAFETY (callers): as for `Input::apply`; `out` is a checked reference to 32 values.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    unsafe fn interleave2(y: [__m512; 2], out: &mut [f32; 32]) {
        // SAFETY: the stores write out[0 .. 32]; the rest as for `Input::apply`.
        unsafe {
            // Per 128-bit block k: lo = tiles 4k, 4k + 1; hi = tiles 4k + 2, 4k + 3.
            let (lo, hi) = (_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
            let first = _mm512_shuffle_f32x4::<0b01_00_01_00>(lo, hi);
            let second = _mm512_shuffle_f32x4::<0b11_10_11_10>(lo, hi);
            let p = out.as_mut_ptr();
            _mm512_storeu_ps(p, _mm512_shuffle_f32x4::<0b11_01_10_00>(first, first));
            _mm512_storeu_ps(p.add(16), _mm512_shuffle_f32x4::<0b11_01_10_00>(second, second));
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F; `v` must hold 36 blocks of C × nt and the runs lie inside the chunk of nt
    /// tiles and the batch of `x` (N × C × H × W of `g`).
    // SAFETY (callers): see "# Safety"; the only caller is `super::forward`, which checks it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn input_transform(x: &[f32], g: &ConvGeom, runs: &[Run], nt: usize, v: &mut [f32]) {
        // SAFETY: this function runs with AVX-512 F; v and the runs as the caller promised.
        unsafe { gather::<T, T, Input>(x, (g.c, g.h, g.w), g.pad, runs, nt, v) }
    }

    /// # Safety
    /// The CPU must have AVX-512 F; `m` must hold 36 blocks of O × nt, the runs lie inside the chunk and the batch,
    /// and `outp` point to the N × O × Ho × Wo output of `g` (pooled sizes with `pool`), of which this chunk's
    /// tiles are written by this call alone.
    #[allow(clippy::too_many_arguments)]
    // SAFETY (callers): see "# Safety"; the only caller is `super::forward`, which checks it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output_transform(
        m: &[f32],
        g: &ConvGeom,
        runs: &[Run],
        nt: usize,
        bias: Option<&[f32]>,
        relu: bool,
        pool: bool,
        outp: SendPtr,
    ) {
        let o = g.o;
        let padded = runs.iter().map(|r| r.len).max().unwrap_or(0).div_ceil(L) * L;
        let stride = 4 * padded;
        let mut out_rows = vec![0f32; 4 * stride];
        for oc in 0..o {
            let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[oc]));
            for run in runs {
                for q0 in (0..run.len).step_by(L) {
                    let l = L.min(run.len - q0);
                    // SAFETY: this function runs with AVX-512 F; output_tiles checks its reads of m.
                    let y = unsafe { output_tiles::<T, 4, Output>(m, (o, oc), nt, (run.t + q0, l), b, relu) };
                    if pool {
                        for pr in 0..2 {
                            let (top, bottom) = (y[2 * pr], y[2 * pr + 1]);
                            let pooled = [
                                _mm512_max_ps(_mm512_max_ps(top[0], top[1]), _mm512_max_ps(bottom[0], bottom[1])),
                                _mm512_max_ps(_mm512_max_ps(top[2], top[3]), _mm512_max_ps(bottom[2], bottom[3])),
                            ];
                            let dst = <&mut [f32; 32]>::try_from(&mut out_rows[pr * stride + 2 * q0..][..32])
                                .expect("32 values");
                            // SAFETY: as above.
                            unsafe { interleave2(pooled, dst) };
                        }
                    } else {
                        for (r, row) in y.into_iter().enumerate() {
                            let dst = <&mut [f32; 64]>::try_from(&mut out_rows[r * stride + 4 * q0..][..64])
                                .expect("64 values");
                            // SAFETY: as above.
                            unsafe { interleave4(row, dst) };
                        }
                    }
                }
                super::store_run(&out_rows, stride, g, run, oc, pool, outp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::winograd_tiles::tests::{check_forward, paths};

    #[test]
    fn f4x4_equals_the_convolution_to_f32_rounding_at_every_edge_padding_and_pool() {
        // (n, c, h, w, o, pad): sizes that are and are not multiples of 4, runs longer than 16 tiles, padding
        // 0–2, one-pixel images, and enough tiles for several chunks. F(2×2) stays near 2e-7 of the largest
        // output here, F(4×4) near 3e-6 (its transforms' coefficients reach 5 and 1/24).
        let cases = [
            (2, 8, 16, 16, 8, 1),
            (1, 5, 9, 11, 3, 1),
            (3, 4, 7, 6, 5, 0),
            (1, 3, 10, 13, 4, 2),
            (1, 2, 1, 1, 2, 1),
            (1, 4, 6, 70, 3, 1),
            (5, 9, 37, 37, 10, 1),
            (1, 64, 18, 20, 4, 1),
        ];
        let activations = [(false, false), (true, false), (true, true), (false, true)];
        check_forward(
            &cases,
            &activations,
            &paths("winograd_f4", avx512::available()),
            |simd, x, g, w, b, (relu, pool), out| {
                forward_on(simd, x, g, w, Some(b), relu, pool, out.into());
                true
            },
        );
    }

    #[test]
    fn wide_layers_are_chosen_and_block5_is_not() {
        let simd = avx512::available();
        assert_eq!(chosen(&ConvGeom::new(32, 256, 37, 37, 256, 3, 1)), simd);
        assert_eq!(chosen(&ConvGeom::new(32, 64, 150, 150, 64, 3, 1)), simd);
        assert!(!chosen(&ConvGeom::new(32, 512, 18, 18, 512, 3, 1)));
        assert!(!chosen(&ConvGeom::new(32, 256, 18, 18, 512, 3, 1)));
        assert!(!chosen(&ConvGeom::new(32, 512, 9, 9, 512, 3, 1)));
        assert!(!chosen(&ConvGeom::new(32, 512, 18, 18, 512, 5, 2)));
    }
}
