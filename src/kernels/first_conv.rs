//! The first convolution of an image network (3 input channels, 3×3, stride 1, padding 1), computed directly with
//! AVX-512 f32 FMAs: for each 16 output positions of a row and 16 output channels, 27 products of a broadcast
//! weight and 16 input values, straight from a zero-bordered copy of the input. Its reduction (27) is too short
//! for the matrix kernels, and im2col writes and packs 27 values per position before any product. The layer is
//! mostly writing its output (184 MB at batch 32), so the gain is modest but holds on every CPU measured.
//!
//! With `--precision bf16` the input and the weights are rounded to bf16 first; their products are then exact in
//! f32 and summed in f32, which is autocast's arithmetic.

use std::cell::RefCell;

use rayon::prelude::*;

use super::direct::{epilogue, BandStore};
use super::geom::{ConvGeom, Epilogue};
use super::raw::{Out, Pool};

/// Output channels per task (the scratch band's channels, as the direct convolution's epilogue takes them).
const CHANNELS: usize = 32;
/// Output positions per register.
const LANES: usize = 16;

/// Whether this kernel computes `g` here: 3×3, padding 1, at most 4 input channels, output channels a multiple of
/// 32, and a CPU with AVX-512 that `CATDOG_SIMD` lets it use ([`super::simd::avx512_kernels`]).
pub fn applicable(g: &ConvGeom) -> bool {
    let shape = g.k == 3 && g.pad == 1 && (1..=4).contains(&g.c) && g.o > 0 && g.o.is_multiple_of(CHANNELS);
    shape && super::simd::avx512_kernels()
}

/// `out = act(b + w ⊛ x)` (NCHW f32), with the inputs rounded to bf16 first when `bf16`; with `pool`, its 2×2/2
/// max-pool. Stores every value of `out` (which need not be initialised).
///
/// Panics when `g` is not [`applicable`] or a buffer does not fit it.
pub fn forward<'o>(x: &[f32], g: &ConvGeom, weight: &[f32], epi: Epilogue, bf16: bool, out: impl Into<Out<'o>>) {
    let Epilogue { bias, relu, pool } = epi;
    let mut out = out.into();
    assert!(
        applicable(g),
        "first conv: {g:?} is not 3×3, padding 1, ≤ 4 inputs, outputs in 32s on AVX-512"
    );
    g.check_forward("first conv", x, bias, out.len(), pool);
    assert_eq!(weight.len(), g.o * g.c * 9, "first conv: weights do not fit {g:?}");
    let round = |v: f32| if bf16 { super::bf16::round(v) } else { v };
    // Per group of 16 output channels, (channel, tap) after (channel, tap), the 16 channels' weights side by side
    // (one broadcast each, at constant offsets), rounded.
    let taps = g.c * 9;
    let w: Vec<f32> = (0..g.o * taps)
        .map(|i| {
            let (group, k, j) = (i / (LANES * taps), i / LANES % taps, i % LANES);
            round(weight[(group * LANES + j) * taps + k])
        })
        .collect();
    let mut padded = PADDED.take(g.n * g.c * (g.h + 2) * row_len(g));
    padded_input(x, g, bf16, &mut padded);
    let (rows, step) = if pool { (g.ho / 2 * 2, 2) } else { (g.ho, 1) };
    let bands = rows.div_ceil(step);
    let oblocks = g.o / CHANNELS;
    let band_store = BandStore {
        g,
        wp: g.wo,
        bias,
        relu,
        pool,
        outp: out.ptr(),
    };
    let plane = (g.h + 2) * row_len(g);
    (0..g.n * bands * oblocks).into_par_iter().for_each(|unit| {
        let (ob, band, img) = (unit % oblocks, unit / oblocks % bands, unit / oblocks / bands);
        let (y0, count) = (band * step, step.min(rows - band * step));
        let image = &padded[img * g.c * plane..][..g.c * plane];
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < CHANNELS * count * g.wo {
                scratch.resize(CHANNELS * count * g.wo, 0.0);
            }
            for r in 0..count {
                for half in 0..CHANNELS / LANES {
                    let oc0 = ob * CHANNELS + half * LANES;
                    let w16 = &w[oc0 * taps..][..LANES * taps];
                    let dst = &mut scratch[half * LANES * count * g.wo + r * g.wo..];
                    row16(image, g, y0 + r, w16, dst, count * g.wo);
                }
            }
            epilogue(&band_store, &scratch, count * g.wo, img, y0, count, ob);
        });
    });
    PADDED.give(padded, 1);
}

static PADDED: Pool<f32> = Pool::new();

thread_local! {
    /// A task's output rows: 32 channels × its rows.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Length of a padded input row: W + 2, and 16 more so that a register's load past the last column stays inside.
fn row_len(g: &ConvGeom) -> usize {
    g.w + 2 + LANES
}

/// The input with a zero border into `padded` (rows of [`row_len`]), rounded to bf16 when `bf16`: per image, per
/// channel, H + 2 rows.
fn padded_input(x: &[f32], g: &ConvGeom, bf16: bool, padded: &mut [f32]) {
    let (len, hw) = (row_len(g), g.h * g.w);
    let plane = (g.h + 2) * len;
    padded.par_chunks_mut(plane).enumerate().for_each(|(i, dst)| {
        let src = &x[i * hw..][..hw];
        dst[..len].fill(0.0);
        for y in 0..g.h {
            let row = &mut dst[(y + 1) * len..][..len];
            row[0] = 0.0;
            for (d, s) in row[1..=g.w].iter_mut().zip(&src[y * g.w..][..g.w]) {
                *d = if bf16 { super::bf16::round(*s) } else { *s };
            }
            row[g.w + 1..].fill(0.0);
        }
        dst[(g.h + 1) * len..].fill(0.0);
    });
}

/// Output row `y` of 16 channels (weights `w16`: per (channel, tap), the 16 channels' weights) into `dst`: channel
/// j's row at `j · ldc`.
fn row16(image: &[f32], g: &ConvGeom, y: usize, w16: &[f32], dst: &mut [f32], ldc: usize) {
    let len = row_len(g);
    let plane = (g.h + 2) * len;
    assert!(y < g.h && image.len() >= g.c * plane && w16.len() >= LANES * g.c * 9);
    assert!(
        dst.len() >= (LANES - 1) * ldc + g.wo,
        "first conv: row scratch too short"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applicable` (asserted by `forward`) saw AVX-512 F; every load reads 16 values from column x0 + kx
    // (x0 < W, kx ≤ 2) of a padded row of W + 2 + 16 values, rows y .. y + 2 of planes < C (checked above); the
    // stores write columns < W of the 16 rows of `dst` (checked above).
    unsafe {
        avx512::row16(
            image.as_ptr(),
            g.c,
            plane,
            len,
            y,
            g.wo,
            w16.as_ptr(),
            dst.as_mut_ptr(),
            ldc,
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applicable() is false off x86-64");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// See `super::row16`.
    ///
    /// # Safety
    /// AVX-512 F; `image` holds `c` planes of `plane` values, rows of `len ≥ wo + 18`, rows y .. y + 2 inside;
    /// `w` holds 16 × c × 9; `dst` 16 rows of `wo` values, `ldc` apart.
    #[allow(clippy::too_many_arguments)]
    // SAFETY (callers): see "# Safety"; the only caller, `super::row16`, checks the sizes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn row16(
        image: *const f32,
        c: usize,
        plane: usize,
        len: usize,
        y: usize,
        wo: usize,
        w: *const f32,
        dst: *mut f32,
        ldc: usize,
    ) {
        let offsets: [usize; 9] = std::array::from_fn(|t| (y + t / 3) * len + t % 3);
        for x0 in (0..wo).step_by(LANES) {
            let mut acc = [_mm512_setzero_ps(); LANES];
            let mut wk = w;
            for ci in 0..c {
                let base = image.wrapping_add(ci * plane + x0);
                for &off in &offsets {
                    // SAFETY: the contract: column x0 + kx + 15 < wo + 18 ≤ len, row y + ky < H + 2.
                    let xv = unsafe { _mm512_loadu_ps(base.add(off)) };
                    for (j, a) in acc.iter_mut().enumerate() {
                        // SAFETY: j < 16 and (ci, t) < (c, 9): inside w's 16 × c × 9.
                        let wv = unsafe { _mm512_set1_ps(*wk.add(j)) };
                        *a = _mm512_fmadd_ps(wv, xv, *a);
                    }
                    wk = wk.wrapping_add(LANES);
                }
            }
            let count = LANES.min(wo - x0);
            let mask: __mmask16 = if count == LANES { 0xffff } else { (1u16 << count) - 1 };
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: row j < 16 of dst, columns x0 .. x0 + count ≤ wo (the contract).
                unsafe { _mm512_mask_storeu_ps(dst.add(j * ldc + x0), mask, *a) };
            }
        }
    }
}
