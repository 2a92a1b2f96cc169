//! The AVX-512 loops shared by the large-tile f32 Winograd transforms (F(4×4, 3×3) in `winograd4`, F(3×3, 3×3)
//! in `winograd3`): 16 tiles per vector, a matrix applied on both sides of each tile, and the pass that gathers
//! the tiles' patches from an image into the transform's blocks.
//!
//! Each tile size supplies its matrices and patch gathering through the [`Side`] and [`Gather`] traits, whose
//! functions are `#[inline(always)]` so that they compile inside the caller's `#[target_feature]` function.
//! (Closures would not: they do not inherit the feature, and every intrinsic in them became a call — F(4×4) lost a
//! fifth of its gain that way.)

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::winograd::Run;
#[cfg(target_arch = "x86_64")]
use super::winograd4::fill_row;

/// Tiles per vector.
pub(super) const L: usize = 16;

/// The lanes of a block of `l` ≤ 16 tiles.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn lanes(l: usize) -> __mmask16 {
    ((1u32 << l) - 1) as __mmask16
}

/// A matrix with `O` rows and `I` columns (Bᵀ, Aᵀ or A of one tile size), applied to 16 tiles at once.
#[cfg(target_arch = "x86_64")]
pub(super) trait Side<const I: usize, const O: usize> {
    /// The matrix times the column `x` of each of the 16 tiles.
    ///
    /// # Safety
    /// Needs AVX-512 F: implementations are `#[inline(always)]` and run only inside functions compiled with it.
    // SAFETY (callers): only the AVX-512 transforms call it, after their callers checked the CPU.
    unsafe fn apply(x: [__m512; I]) -> [__m512; O];
}

/// `S d` for the I × I values `d[r][s]` of 16 tiles: `S` over the rows, for each column; `out[i][s]`.
///
/// # Safety
/// Needs AVX-512 F, as [`Side::apply`].
// SAFETY (callers): only inlined into the AVX-512 transforms, whose callers checked the CPU.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn over_rows<const I: usize, const O: usize, S: Side<I, O>>(d: [[__m512; I]; I]) -> [[__m512; I]; O] {
    // SAFETY: the caller runs with AVX-512 F (this function's contract). Plain loops, no closures: see the top.
    unsafe {
        let zero = _mm512_setzero_ps();
        let mut by_cols = [[zero; I]; O];
        for s in 0..I {
            let mut column = [zero; I];
            for (value, dr) in column.iter_mut().zip(&d) {
                *value = dr[s];
            }
            for (bc, value) in by_cols.iter_mut().zip(S::apply(column)) {
                bc[s] = value;
            }
        }
        by_cols
    }
}

/// A transform that reads I × I patches of an image, tiles `STEP` pixels apart: the input transform (I = the
/// tile's input size, rows and columns from −pad) or the weight gradient's transform of the output gradient
/// (I = the tile's output size, no padding).
#[cfg(target_arch = "x86_64")]
pub(super) trait Gather<const I: usize, const O: usize>: Side<I, O> {
    /// Pixels between neighbouring tiles: the tile's output size.
    const STEP: usize;
    /// Values [`Self::columns`] reads from a row for 16 tiles.
    const READS: usize;

    /// Columns 0 .. I of 16 neighbouring tiles' patches from `row` (`READS` values from the first tile's column 0):
    /// `out[a]` lane q = `row[STEP · q + a]`.
    ///
    /// # Safety
    /// As [`Side::apply`]; panics when `row` holds fewer than `READS` values.
    // SAFETY (callers): as for `Side::apply`.
    unsafe fn columns(row: &[f32]) -> [__m512; I];
}

/// For every run of tiles and every plane of `x` (`planes` × h × w): the tiles' I × I patches (rows and columns
/// from `STEP · tile − pad`, zero outside the plane), transformed on both sides, into `out[(k · planes + p) · nt +
/// t]` for product k = i · O + j and the chunk's tile t.
///
/// # Safety
/// Needs AVX-512 F (the caller is compiled with it and its caller checked); `out` holds O² blocks of planes × nt
/// and the runs lie inside the chunk of nt tiles and inside `x`'s images.
// SAFETY (callers): the tile sizes' `input_transform`/`grad_transform`, whose own callers check CPU and buffers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn gather<const I: usize, const O: usize, X: Gather<I, O>>(
    x: &[f32],
    (planes, h, w): (usize, usize, usize),
    pad: usize,
    runs: &[Run],
    nt: usize,
    out: &mut [f32],
) {
    let padded = runs.iter().map(|r| r.len).max().unwrap_or(0).div_ceil(L) * L;
    // A run's I rows from column STEP · tx0 − pad, and what the last block's reads need past its 16 tiles.
    let width = X::STEP * padded + X::READS - X::STEP * L;
    let mut rows = vec![0f32; I * width];
    for run in runs {
        for p in 0..planes {
            let plane = &x[(run.img * planes + p) * h * w..][..h * w];
            for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                let y = (X::STEP * run.ty + r) as isize - pad as isize;
                fill_row(plane, (h, w), y, X::STEP * run.tx0, pad, row);
            }
            for q0 in (0..run.len).step_by(L) {
                let l = L.min(run.len - q0);
                // SAFETY: AVX-512 F (this function's contract); the reads stay in `rows` (sliced), and the masked
                // stores write the l values of each checked `dst`.
                unsafe {
                    let mut d = [[_mm512_setzero_ps(); I]; I];
                    for (r, dr) in d.iter_mut().enumerate() {
                        *dr = X::columns(&rows[r * width + X::STEP * q0..][..X::READS]);
                    }
                    // Then over the columns, row by row, each stored at once (fewer values live than all O²).
                    for (i, row) in over_rows::<I, O, X>(d).into_iter().enumerate() {
                        for (j, value) in X::apply(row).into_iter().enumerate() {
                            let at = ((i * O + j) * planes + p) * nt + run.t + q0;
                            let dst = &mut out[at..at + l];
                            _mm512_mask_storeu_ps(dst.as_mut_ptr(), lanes(l), value);
                        }
                    }
                }
            }
        }
    }
}

/// The output side: product blocks `m[(k · o + oc) · nt + t]` (k = i · I + j, I² of them) of 16 tiles from tile
/// `t` (l ≤ 16 of them), transformed on both sides by `S` (Aᵀ), plus `bias`, through ReLU with `relu`:
/// `y[r][s]` lane q = output (r, s) of tile t + q.
///
/// # Safety
/// Needs AVX-512 F, as [`Side::apply`]; panics when a block's l values lie outside `m`.
// SAFETY (callers): the tile sizes' `output_transform`, whose own callers check the CPU.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn output_tiles<const I: usize, const O: usize, S: Side<I, O>>(
    m: &[f32],
    (o, oc): (usize, usize),
    nt: usize,
    (t, l): (usize, usize),
    bias: __m512,
    relu: bool,
) -> [[__m512; O]; O] {
    // SAFETY: AVX-512 F (this function's contract); each masked load reads the l values of a checked slice.
    unsafe {
        let zero = _mm512_setzero_ps();
        let mut d = [[zero; I]; I];
        for (i, dr) in d.iter_mut().enumerate() {
            for (j, value) in dr.iter_mut().enumerate() {
                let at = ((i * I + j) * o + oc) * nt + t;
                *value = _mm512_maskz_loadu_ps(lanes(l), m[at..at + l].as_ptr());
            }
        }
        let mut y = [[zero; O]; O];
        for (yr, row) in y.iter_mut().zip(over_rows::<I, O, S>(d)) {
            *yr = S::apply(row);
            for value in yr.iter_mut() {
                *value = _mm512_add_ps(*value, bias);
                if relu {
                    *value = _mm512_max_ps(*value, zero);
                }
            }
        }
        y
    }
}
