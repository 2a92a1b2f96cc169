//! What the large-tile f32 Winograd convolutions share (F(4×4, 3×3) in `winograd_f4`, F(3×3, 3×3) in
//! `winograd_f3`): the weight transform, the chunk loop of the forward, the pass that gathers tiles' patches from an
//! image into transformed blocks, the output tiles, and the rows they are read from and written to — each tile
//! size brings its matrices. The portable loops go tile by tile (the reference, and the path of CPUs without
//! AVX-512); [`avx512`] has the same loops 16 tiles a vector.

use rayon::prelude::*;

use super::geom::ConvGeom;
use super::raw::SendPtr;
use super::winograd_f2::{block_products, with_buffers};
use super::winograd_shared::{runs, Run};

/// `u[k][o][c]` = (G g Gᵀ)[k / T][k % T] for each 3×3 kernel g = w[o][c], where `g_times` is G (T × 3) times a
/// kernel column or row (`u`'s old values do not matter).
pub(super) fn transform_weights_into<const T: usize>(
    weight: &[f32],
    (o, c): (usize, usize),
    g_times: impl Fn([f32; 3]) -> [f32; T] + Sync,
    u: &mut Vec<f32>,
) {
    assert_eq!(weight.len(), o * c * 9, "Winograd: weight is not O × C × 3 × 3");
    let blocks = T * T;
    u.resize(blocks * o * c, 0.0);
    let oc = o * c;
    let up = SendPtr::new(u);
    // One output channel per task; its T² rows of C values are built locally and written contiguously.
    (0..o).into_par_iter().for_each_init(
        || vec![0f32; blocks * c],
        |rows, oi| {
            for ci in 0..c {
                let g = &weight[(oi * c + ci) * 9..][..9];
                // t = G g (T × 3), then U = t Gᵀ (T × T).
                let cols: [[f32; T]; 3] = std::array::from_fn(|s| g_times([g[s], g[3 + s], g[6 + s]]));
                for i in 0..T {
                    let row = g_times([cols[0][i], cols[1][i], cols[2][i]]);
                    for (j, v) in row.iter().enumerate() {
                        rows[(i * T + j) * c + ci] = *v;
                    }
                }
            }
            for (k, row) in rows.chunks_exact(c).enumerate() {
                // SAFETY: k < T² and oi < o, so the c values from (k, oi, 0) end at most at T²·o·c = u.len(); row
                // (k, oi) belongs to this task's oi alone, and `u` lives until the loop ends.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), up.get().add(k * oc + oi * c), c) };
            }
        },
    );
}

/// Tiles per chunk: the larger transformed buffer (blocks × channels × tiles floats) near 3 MiB, at least 32 tiles,
/// and enough chunks to keep every thread busy. Chunks of 1, 2, 3, 4 and 8 MiB were timed on block1–block3
/// (AMD EPYC Zen 5, 1 MiB L2 per core): 3 was best or near it on every layer, 8 up to 30% slower.
fn chunk_tiles(g: &ConvGeom, blocks: usize, total: usize, threads: usize) -> usize {
    let widest = g.c.max(g.o).max(1);
    let by_cache = (3 * 1024 * 1024 / (blocks * 4 * widest)).clamp(32, 4096);
    let by_threads = total.div_ceil(4 * threads.max(1)).max(32);
    by_cache.min(by_threads).max(1)
}

/// A chunk's input transform: (its runs of tiles, nt, the transformed input to write).
pub(super) type InputTransform<'a> = dyn Fn(&[Run], usize, &mut [f32]) + Sync + 'a;
/// A chunk's output transform: (the products, its runs of tiles, nt).
pub(super) type OutputTransform<'a> = dyn Fn(&[f32], &[Run], usize) + Sync + 'a;

/// The chunk loop of the large-tile Winograd forwards: tiles of
/// `side` × `side` outputs and `blocks` products with the transformed weights `u` (blocks × O × C). Per chunk of
/// tiles, in parallel, `input` writes the transformed input (blocks × C × nt), one gemm per block makes the
/// products (blocks × O × nt), and `output` transforms them into the output.
pub(super) fn over_chunks(
    g: &ConvGeom,
    (side, blocks): (usize, usize),
    u: &[f32],
    input: &InputTransform,
    output: &OutputTransform,
) {
    let (c, o) = (g.c, g.o);
    let (th, tw) = (g.ho.div_ceil(side), g.wo.div_ceil(side));
    let total = g.n * th * tw;
    let threads = rayon::current_num_threads();
    let tc = chunk_tiles(g, blocks, total, threads);
    let nchunks = total.div_ceil(tc);
    let par_chunks = nchunks >= 2 * threads || threads == 1;
    let par = if par_chunks {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let run = |chunk: usize| {
        let t0 = chunk * tc;
        let nt = tc.min(total - t0);
        with_buffers(blocks * c * nt, blocks * o * nt, |v, m| {
            let runs = runs(t0, nt, th, tw);
            input(&runs, nt, v);
            block_products(u, v, (o, c, nt), par, m);
            output(m, &runs, nt);
        });
    };
    if par_chunks {
        (0..nchunks).into_par_iter().for_each(run);
    } else {
        (0..nchunks).for_each(run);
    }
}

/// For every run of tiles and every plane of `x` (`planes` × h × w): the tiles' I × I patches (rows and columns
/// from `step` · tile − pad, zero outside the plane; tiles `step` pixels apart), transformed on both sides by
/// `side` (O × I), into `out[(k · planes + p) · nt + t]` for product k = i · O + j and the chunk's tile t. The
/// input transform (I = the tile's input size) and the weight gradient's transform of the output gradient
/// (I = the tile's output size, no padding).
pub(super) fn gather<const I: usize, const O: usize>(
    x: &[f32],
    (planes, h, w): (usize, usize, usize),
    (step, pad): (usize, usize),
    runs: &[Run],
    nt: usize,
    side: impl Fn([f32; I]) -> [f32; O],
    out: &mut [f32],
) {
    // A run's I rows from column step · tx0 − pad.
    let width = step * runs.iter().map(|r| r.len).max().unwrap_or(0) + (I - step);
    let mut rows = vec![0f32; I * width];
    for run in runs {
        let len = step * run.len + (I - step);
        let span = RowSpan::new(w, step * run.tx0, pad, len);
        let y0 = (step * run.ty) as isize - pad as isize;
        for (r, row) in rows.chunks_exact_mut(width).enumerate() {
            span.clear(&mut row[..len], inside(y0 + r as isize, h));
        }
        for p in 0..planes {
            let plane = &x[(run.img * planes + p) * h * w..][..h * w];
            for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                let y = y0 + r as isize;
                if inside(y, h) {
                    span.fill(&plane[y as usize * w..][..w], row);
                }
            }
            for q in 0..run.len {
                // `side` over each patch column a (giving cols[a][i]), then over each row i of the result.
                let cols: [[f32; O]; I] =
                    std::array::from_fn(|a| side(std::array::from_fn(|r| rows[r * width + step * q + a])));
                for i in 0..O {
                    let both = side(std::array::from_fn(|a| cols[a][i]));
                    for (j, value) in both.into_iter().enumerate() {
                        out[((i * O + j) * planes + p) * nt + run.t + q] = value;
                    }
                }
            }
        }
    }
}

/// act(b + S m Sᵀ) for one tile's I × I products `m[i][j]`, with `side` = S (O × I, the Aᵀ of the tile size):
/// `[r][s]` is output (r, s).
#[inline(always)]
pub(super) fn tile_outputs<const I: usize, const O: usize>(
    m: [[f32; I]; I],
    side: impl Fn([f32; I]) -> [f32; O],
    b: f32,
    relu: bool,
) -> [[f32; O]; O] {
    // S over the rows of m (per column j), then over the columns.
    let by_rows: [[f32; O]; I] = std::array::from_fn(|j| side(std::array::from_fn(|i| m[i][j])));
    std::array::from_fn(|r| {
        side(std::array::from_fn(|j| by_rows[j][r])).map(|v| if relu { (v + b).max(0.0) } else { v + b })
    })
}

/// Product block k = i · T + j of tile `t`, output channel `oc`, from `m` (T² blocks of O × nt), as `[i][j]`.
#[inline(always)]
pub(super) fn tile_products<const T: usize>(m: &[f32], (o, oc): (usize, usize), nt: usize, t: usize) -> [[f32; T]; T] {
    std::array::from_fn(|i| std::array::from_fn(|j| m[((i * T + j) * o + oc) * nt + t]))
}

/// Where the image lands in a run's patch rows (`len` values from column `x0 − pad`): the image's columns
/// `start .. start + n` at row positions `first .. first + n`; every other position is zero (padding, or past the
/// image's edge), as is a whole row above or below the image. The same for every plane, so [`RowSpan::clear`]
/// zeroes the rest once per run and [`RowSpan::fill`] copies only the image's values per plane: zeroing per row
/// and plane was a memset call per 9–18 values at block4–block5, which showed in the fp32 forward's profile.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowSpan {
    first: usize,
    start: usize,
    n: usize,
}

impl RowSpan {
    pub(super) fn new(w: usize, x0: usize, pad: usize, len: usize) -> Self {
        let first = pad.saturating_sub(x0).min(len);
        let start = (x0 + first).saturating_sub(pad).min(w);
        let n = (len - first).min(w - start);
        RowSpan { first, start, n }
    }

    /// Zeroes what no plane writes into `row`: all of it when it lies outside the image (`inside` false), else
    /// the positions around the span.
    #[inline(always)]
    pub(super) fn clear(&self, row: &mut [f32], inside: bool) {
        if !inside {
            row.fill(0.0);
            return;
        }
        row[..self.first].fill(0.0);
        row[self.first + self.n..].fill(0.0);
    }

    /// The image's values of one input row (`src`, w values) into the span of `row`.
    #[inline(always)]
    pub(super) fn fill(&self, src: &[f32], row: &mut [f32]) {
        row[self.first..self.first + self.n].copy_from_slice(&src[self.start..self.start + self.n]);
    }
}

/// Input row `y` of a plane of height `h`: whether it lies inside the image.
#[inline(always)]
fn inside(y: isize, h: usize) -> bool {
    (0..h as isize).contains(&y)
}

/// Writes a run's output rows, `per_tile` values of each of `per_tile` rows per tile, into plane (img, oc) of an
/// N × O × ho × wo output, clipped at its edges; row r of `out_rows` starts at r · `stride`.
pub(super) fn store_rows(
    out_rows: &[f32],
    stride: usize,
    (per_tile, ho, wo): (usize, usize, usize),
    o: usize,
    (run, oc): (&Run, usize),
    outp: SendPtr,
) {
    let x0 = per_tile * run.tx0;
    if x0 >= wo {
        return;
    }
    let ncols = (per_tile * run.len).min(wo - x0);
    for r in 0..per_tile {
        let y = per_tile * run.ty + r;
        if y >= ho {
            break;
        }
        let src = &out_rows[r * stride..r * stride + ncols];
        // SAFETY: y < ho, x0 + ncols ≤ wo, img < n, oc < o: row y of plane (img, oc) of the output, whose length
        // the caller checked; only this run's tiles own these outputs (a tile is in one chunk), and `src` is a
        // checked slice of ncols values.
        unsafe {
            let dst = outp.get().add(((run.img * o + oc) * ho + y) * wo + x0);
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, ncols);
        }
    }
}

/// The shared loops in AVX-512 intrinsics, 16 tiles a vector (lane q: tile q of a run). Each tile size supplies
/// its matrices and patch columns through the [`avx512::Side`] and [`avx512::Gather`] traits, whose functions are
/// `#[inline(always)]` so that they compile inside the caller's `#[target_feature]` function. (Closures would
/// not: they do not inherit the feature, and every intrinsic in them became a call — F(4×4) lost a fifth of its
/// gain that way.)
pub(super) mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    #[cfg(target_arch = "x86_64")]
    use super::super::winograd_shared::Run;
    #[cfg(target_arch = "x86_64")]
    use super::{inside, RowSpan};

    /// Tiles per vector.
    pub(in crate::kernels) const L: usize = 16;

    /// The lanes of a block of `l` ≤ 16 tiles.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(in crate::kernels) fn lanes(l: usize) -> __mmask16 {
        ((1u32 << l) - 1) as __mmask16
    }

    /// A matrix with `O` rows and `I` columns (Bᵀ, Aᵀ or A of one tile size), applied to 16 tiles at once.
    #[cfg(target_arch = "x86_64")]
    pub(in crate::kernels) trait Side<const I: usize, const O: usize> {
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
    pub(in crate::kernels) unsafe fn over_rows<const I: usize, const O: usize, S: Side<I, O>>(
        d: [[__m512; I]; I],
    ) -> [[__m512; I]; O] {
        // SAFETY: the caller runs with AVX-512 F (this function's contract). Plain loops, no closures (see the module).
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
    pub(in crate::kernels) trait Gather<const I: usize, const O: usize>: Side<I, O> {
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
    pub(in crate::kernels) unsafe fn gather<const I: usize, const O: usize, X: Gather<I, O>>(
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
            let span = RowSpan::new(w, X::STEP * run.tx0, pad, width);
            let y0 = (X::STEP * run.ty) as isize - pad as isize;
            for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                span.clear(row, inside(y0 + r as isize, h));
            }
            for p in 0..planes {
                let plane = &x[(run.img * planes + p) * h * w..][..h * w];
                for (r, row) in rows.chunks_exact_mut(width).enumerate() {
                    let y = y0 + r as isize;
                    if inside(y, h) {
                        span.fill(&plane[y as usize * w..][..w], row);
                    }
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
    pub(in crate::kernels) unsafe fn output_tiles<const I: usize, const O: usize, S: Side<I, O>>(
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
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::sample_values as noise;

    /// A row that held anything (NaN here: another run's values) reads as the image's columns from `x0 − pad`,
    /// zero outside it, after one `clear` and a `fill`: left and right padding, ragged right edges, rows above
    /// and below the image.
    #[test]
    fn a_row_span_leaves_the_image_and_zeros_nothing_else() {
        let src: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        for (x0, pad, len) in [
            (0, 1, 13),
            (0, 2, 8),
            (3, 1, 5),
            (6, 0, 7),
            (8, 2, 10),
            (12, 1, 4),
            (0, 0, 9),
        ] {
            for inside in [true, false] {
                let span = RowSpan::new(src.len(), x0, pad, len);
                let mut row = vec![f32::NAN; len];
                span.clear(&mut row, inside);
                if inside {
                    span.fill(&src, &mut row);
                }
                let want: Vec<f32> = (0..len)
                    .map(|p| {
                        let col = (x0 + p) as isize - pad as isize;
                        match usize::try_from(col) {
                            Ok(c) if inside && c < src.len() => src[c],
                            _ => 0.0,
                        }
                    })
                    .collect();
                assert_eq!(row, want, "x0 {x0}, pad {pad}, {len} values, inside {inside}");
            }
        }
    }

    /// The convolution in f64, bias and ReLU and pool as `forward`.
    fn reference(x: &[f32], g: &ConvGeom, w: &[f32], b: &[f32], relu: bool, pool: bool) -> Vec<f64> {
        let (n, c, h, wd, o, pad) = (g.n, g.c, g.h, g.w, g.o, g.pad as isize);
        let mut y = vec![0f64; n * o * g.ho * g.wo];
        for img in 0..n {
            for oc in 0..o {
                for yy in 0..g.ho {
                    for xx in 0..g.wo {
                        let mut s = f64::from(b[oc]);
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (yy as isize + ky - pad, xx as isize + kx - pad);
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xv = x[((img * c + ci) * h + iy as usize) * wd + ix as usize];
                                    let wv = w[((oc * c + ci) * 3 + ky as usize) * 3 + kx as usize];
                                    s += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((img * o + oc) * g.ho + yy) * g.wo + xx] = if relu { s.max(0.0) } else { s };
                    }
                }
            }
        }
        if !pool {
            return y;
        }
        let (ph, pw) = (g.ho / 2, g.wo / 2);
        let mut p = vec![0f64; n * o * ph * pw];
        for plane in 0..n * o {
            for py in 0..ph {
                for px in 0..pw {
                    let at = |dy: usize, dx: usize| y[(plane * g.ho + 2 * py + dy) * g.wo + 2 * px + dx];
                    p[(plane * ph + py) * pw + px] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                }
            }
        }
        p
    }

    /// The transforms to test: the portable ones (false), and the AVX-512 ones (true) where `simd` says the CPU
    /// runs them; `name`'s skip is said on stderr.
    pub(in crate::kernels) fn paths(name: &str, simd: bool) -> Vec<bool> {
        if simd {
            return vec![false, true];
        }
        eprintln!("{name}: no AVX-512 on this CPU, its transforms skipped");
        vec![false]
    }

    /// Holds `run` to the f64 convolution, within 1e-5 of the largest output, for each case (n, c, h, w, o, pad),
    /// each (relu, pool) and each transform path in `paths` (false: portable, true: AVX-512).
    pub(in crate::kernels) fn check_forward(
        cases: &[(usize, usize, usize, usize, usize, usize)],
        activations: &[(bool, bool)],
        paths: &[bool],
        run: impl Fn(bool, &[f32], &ConvGeom, &[f32], &[f32], (bool, bool), &mut [f32]) -> bool,
    ) {
        for (i, &(n, c, h, w, o, pad)) in cases.iter().enumerate() {
            let g = ConvGeom::new(n, c, h, w, o, 3, pad);
            let x = noise(n * c * h * w, 1 + i as u64);
            let wt = noise(o * c * 9, 100 + i as u64);
            let b = noise(o, 200 + i as u64);
            for &(relu, pool) in activations {
                let want = reference(&x, &g, &wt, &b, relu, pool);
                let scale = want.iter().fold(1e-6f64, |s, v| s.max(v.abs()));
                for &simd in paths {
                    let mut got = vec![f32::NAN; g.output_len(pool)];
                    if !run(simd, &x, &g, &wt, &b, (relu, pool), &mut got) {
                        continue;
                    }
                    assert!(got.iter().all(|v| v.is_finite()), "case {i}: an output was not written");
                    let worst = got
                        .iter()
                        .zip(&want)
                        .fold(0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
                    assert!(
                        worst / scale < 1e-5,
                        "case {i} relu {relu} pool {pool} simd {simd}: max difference {worst} of {scale}"
                    );
                }
            }
        }
    }
}
