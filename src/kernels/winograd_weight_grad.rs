//! The bf16 Winograd F(2×2, 3×3) weight gradient with its transforms vectorised across channels.
//!
//! The arithmetic is [`super::winograd_f2::weight_grad_bf16`]'s: `dW = Gᵀ (Σ_tiles V ⊙ Ŷ) G`, V = Bᵀ d B of the
//! input tiles and Ŷ = A dY Aᵀ of the output-gradient tiles rounded to bf16, their products summed in f32. What
//! differs is how the operands are made. That form transforms one channel along a run of tiles into f32 buffers
//! and packs them afterwards; at 9×9 a run is 5 tiles long, and in block5's bf16 weight gradient the transforms and
//! the packing outweighed the products. Here each transform
//! works on 16 channels at once, one per lane, tile after tile, and rounds its 16 results straight into the
//! packed operands, a pair of tiles at a time:
//! - `B_k = V_kᵀ` (tiles × C): a k-pair is two neighbouring tiles, so 16 channels' pairs are 16 consecutive u32
//!   of a panel row;
//! - `A_k = Ŷ_k` (O × tiles): the same for 16 output channels, the two halves of a 16-channel group going to two
//!   panels of [`MR`] rows.
//!
//! The 16 products `M_k += A_k · B_k` then run one task each into one set of sums, over chunks of tiles whose
//! operands fit [`CHUNK_BYTES`]: there are no per-thread partial sums to add up afterwards.

use rayon::prelude::*;

use super::bf16::{self, Bf16Kernel, PackedA, MR, NR};
use super::geom::ConvGeom;
use super::raw::Pool;
use super::simd::dispatch;
use super::transpose::rows_to_lanes;
use super::winograd_shared as shared;

/// Channels per vector: one lane each.
const L: usize = 16;
type Lanes = [f32; L];
/// The 16 transformed values of one tile, 16 channels each.
type Tile = [Lanes; 16];

// A 16-channel group of output channels fills exactly two panels of A.
const _: () = assert!(2 * MR == L && NR == 2 * L);

/// True when this path computes the geometry: a Winograd geometry whose channel counts are multiples of 16.
pub fn applicable(g: &ConvGeom) -> bool {
    shared::applicable(g) && g.c.is_multiple_of(L) && g.o.is_multiple_of(L)
}

/// Bytes of packed operands per chunk of tiles (16 · (C + O) bf16 values a tile): block5 at batch 32 (800 tiles
/// of 512 + 512 channels, 26 MB) is one chunk, so its sums are written once.
const CHUNK_BYTES: usize = 32 << 20;

/// Tiles per chunk: as many as [`CHUNK_BYTES`] holds (at least 64), an even number unless it is all of them.
fn chunk_tiles(g: &ConvGeom, total: usize) -> usize {
    let per_tile = 16 * (g.c + g.o) * 2;
    let fit = (CHUNK_BYTES / per_tile).max(64) / 2 * 2;
    fit.min(total).max(1)
}

/// The 16 sums of products (16 · O · C floats, 16 MB for 512 × 512), kept between calls.
static SUMS: Pool<f32> = Pool::new();
/// The 32 packed operand blocks of a chunk, kept between calls.
static OPERANDS: Pool<u32> = Pool::new();

/// Weight and bias gradients of a 3×3 convolution in bf16 on `kernel`, as
/// [`super::winograd_f2::weight_grad_bf16`] computes them (up to the order of the f32 sums). `x` is N × C × H × W,
/// `dy` N × O × Ho × Wo, `dw` O × C × 3 × 3, `db` O.
///
/// Panics when `g` is not [`applicable`] or a buffer does not fit `g`.
pub fn weight_grad(kernel: Bf16Kernel, x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    assert!(
        applicable(g),
        "Winograd bf16: {g:?} is not a 3×3 geometry with channels in multiples of 16"
    );
    shared::check_weight_grad(x, g, dy, dw, db);
    let total = g.n * g.ho.div_ceil(2) * g.wo.div_ceil(2);
    weight_grad_in_chunks(kernel, x, g, dy, chunk_tiles(g, total), dw, db)
}

/// [`weight_grad`] in chunks of `tc` tiles (the buffers checked by the caller).
fn weight_grad_in_chunks(
    kernel: Bf16Kernel,
    x: &[f32],
    g: &ConvGeom,
    dy: &[f32],
    tc: usize,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (c, o) = (g.c, g.o);
    let total = g.n * g.ho.div_ceil(2) * g.wo.div_ceil(2);
    let mut sums = SUMS.take(16 * o * c);
    if total == 0 {
        // The first chunk overwrites the kept sums; an empty batch has none, and read the last call's sums.
        sums.fill(0.0);
    }
    for (i, t0) in (0..total).step_by(tc).enumerate() {
        let nt = tc.min(total - t0);
        let kp = nt.div_ceil(2);
        let mut b_blocks: Vec<Vec<u32>> = (0..16).map(|_| OPERANDS.take(c.div_ceil(NR) * kp * NR)).collect();
        if !c.is_multiple_of(NR) {
            // The second half of the last panel has no channels: it must read as zeros.
            b_blocks.iter_mut().for_each(|b| b.fill(0));
        }
        pack_inputs(x, g, (t0, nt), &mut b_blocks);
        let mut a_blocks: Vec<Vec<u32>> = (0..16).map(|_| OPERANDS.take(o / MR * kp * MR)).collect();
        pack_grads(dy, g, (t0, nt), &mut a_blocks);
        let a: Vec<PackedA> = a_blocks.into_iter().map(|d| PackedA::from_packed(o, nt, d)).collect();
        sums.par_chunks_mut(o * c)
            .zip(a.par_iter().zip(b_blocks.par_iter()))
            .for_each(|(m, (a, b))| bf16::gemm_into(kernel, a, b, c, m, c, i > 0));
        for block in a.into_iter().map(PackedA::into_data).chain(b_blocks) {
            OPERANDS.give(block, 32);
        }
    }
    shared::weights_from_sums(&[&sums], o, c, dw);
    SUMS.give(sums, 1);
    shared::bias_grad(dy, g, db);
}

/// `kp` pairs of tiles cut into `parts` near-equal ranges (fewer when there are fewer pairs).
fn pair_ranges(kp: usize, parts: usize) -> Vec<(usize, usize)> {
    let per = kp.div_ceil(parts.clamp(1, kp.max(1))).max(1);
    (0..kp).step_by(per).map(|p0| (p0, (p0 + per).min(kp))).collect()
}

/// Cuts each block at `ranges` (ascending, disjoint index ranges) and gives each range its piece of every block.
fn split_blocks<'a>(blocks: &'a mut [Vec<u32>], ranges: &[(usize, usize)]) -> Vec<Vec<&'a mut [u32]>> {
    let mut out: Vec<Vec<&mut [u32]>> = ranges.iter().map(|_| Vec::with_capacity(blocks.len())).collect();
    for block in blocks.iter_mut() {
        let (mut rest, mut at): (&mut [u32], usize) = (block, 0);
        for (pieces, &(start, end)) in out.iter_mut().zip(ranges) {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
            let (piece, tail) = tail.split_at_mut(end - start);
            pieces.push(piece);
            (rest, at) = (tail, end);
        }
    }
    out
}

/// Tasks per operand: enough for every thread to get several, split further along the tiles when there are few
/// channel groups.
fn pair_parts(groups: usize) -> usize {
    (4 * rayon::current_num_threads()).div_ceil(groups.max(1))
}

/// B_k = V_kᵀ of the chunk's tiles `t0 .. t0 + nt` into `blocks` (16 of them, panels of NR channels × the chunk's
/// pairs of tiles). One task per panel and range of pairs.
fn pack_inputs(x: &[f32], g: &ConvGeom, (t0, nt): (usize, usize), blocks: &mut [Vec<u32>]) {
    let (kp, panels) = (nt.div_ceil(2), g.c.div_ceil(NR));
    let pairs = pair_ranges(kp, pair_parts(panels));
    let mut tasks = Vec::new();
    let mut ranges = Vec::new();
    for panel in 0..panels {
        for &(p0, p1) in &pairs {
            tasks.push((panel, p0, p1));
            ranges.push((panel * kp * NR + p0 * NR, panel * kp * NR + p1 * NR));
        }
    }
    let pieces = split_blocks(blocks, &ranges);
    tasks
        .into_par_iter()
        .zip(pieces)
        .for_each(|((panel, p0, p1), mut out)| {
            let (first, count) = (t0 + 2 * p0, (2 * p1).min(nt) - 2 * p0);
            for half in 0..((g.c - panel * NR) / L).min(2) {
                pack_input_lanes(x, g, (first, count), panel * NR + half * L, half, &mut out);
            }
        });
}

/// A_k = Ŷ_k of the chunk's tiles into `blocks` (16 of them, panels of MR output channels × pairs of tiles).
/// One task per group of 16 output channels (two panels) and range of pairs.
fn pack_grads(dy: &[f32], g: &ConvGeom, (t0, nt): (usize, usize), blocks: &mut [Vec<u32>]) {
    let (kp, groups) = (nt.div_ceil(2), g.o / L);
    let pairs = pair_ranges(kp, pair_parts(groups));
    let np = pairs.len();
    // Ranges in block order: group by group, its first panel's pair ranges, then its second panel's.
    let mut ranges = Vec::new();
    for group in 0..groups {
        for panel in [2 * group, 2 * group + 1] {
            ranges.extend(
                pairs
                    .iter()
                    .map(|&(p0, p1)| (panel * kp * MR + p0 * MR, panel * kp * MR + p1 * MR)),
            );
        }
    }
    let mut pieces: Vec<Option<Vec<&mut [u32]>>> = split_blocks(blocks, &ranges).into_iter().map(Some).collect();
    let mut tasks = Vec::new();
    for group in 0..groups {
        for (i, &(p0, p1)) in pairs.iter().enumerate() {
            let lo = pieces[2 * group * np + i].take().expect("each range once");
            let hi = pieces[(2 * group + 1) * np + i].take().expect("each range once");
            tasks.push((group, p0, p1, lo, hi));
        }
    }
    tasks.into_par_iter().for_each(|(group, p0, p1, mut lo, mut hi)| {
        let (first, count) = (t0 + 2 * p0, (2 * p1).min(nt) - 2 * p0);
        pack_grad_lanes(dy, g, (first, count), group * L, &mut lo, &mut hi);
    });
}

#[inline(always)]
fn add(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] + b[l])
}

#[inline(always)]
fn sub(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|l| a[l] - b[l])
}

#[inline(always)]
fn neg(a: Lanes) -> Lanes {
    std::array::from_fn(|l| -a[l])
}

dispatch! {
    /// The input transform of tiles `first .. first + count` (`first` is the chunk's tile of pair 0 of `out`) for
    /// channels `ch0 .. ch0 + 16`, into lanes `half · 16 ..` of each pair row of the 16 blocks' pieces in `out`.
    fn pack_input_lanes(
        x: &[f32],
        g: &ConvGeom,
        tiles: (usize, usize),
        ch0: usize,
        half: usize,
        out: &mut [&mut [u32]],
    ) => pack_input_lanes_body
}

#[inline(always)]
fn pack_input_lanes_body(
    x: &[f32],
    g: &ConvGeom,
    (first, count): (usize, usize),
    ch0: usize,
    half: usize,
    out: &mut [&mut [u32]],
) {
    let (c, h, w, pad) = (g.c, g.h, g.w, g.pad as isize);
    let runs = shared::runs(first, count, g.ho.div_ceil(2), g.wo.div_ceil(2));
    let width = 2 * runs.iter().map(|r| r.len).max().unwrap_or(0) + 2;
    // The run's four input rows, channel-interleaved (zero outside the image): band[r · width + col][lane].
    let mut band = vec![[0f32; L]; 4 * width];
    // The tiles of the pair being made: slot 0 the even tile, slot 1 the odd one.
    let mut pair_tiles: [Tile; 2] = [[[0.0; L]; 16]; 2];
    let mut done = 0;
    for run in &runs {
        let cols = 2 * run.len + 2;
        let (x0, y0) = (2 * run.tx0 as isize - pad, 2 * run.ty as isize - pad);
        // Input columns x0 + col for col in lo..hi are inside the image.
        let lo = (-x0).clamp(0, cols as isize) as usize;
        let hi = (w as isize - x0).clamp(lo as isize, cols as isize) as usize;
        for r in 0..4 {
            band[r * width..][..cols].fill([0.0; L]);
        }
        for r in 0..4 {
            let yy = y0 + r as isize;
            if yy < 0 || yy >= h as isize {
                continue;
            }
            let first = (run.img * c + ch0) * h * w + yy as usize * w + (x0 + lo as isize) as usize;
            rows_to_lanes(x, first, h * w, hi - lo, &mut band[r * width + lo..]);
        }
        // Bᵀ d, column by column: rows r0 − r2, r1 + r2, r2 − r1, r1 − r3.
        for col in 0..cols {
            let [r0, r1, r2, r3] = [0, 1, 2, 3].map(|r| band[r * width + col]);
            band[col] = sub(r0, r2);
            band[width + col] = add(r1, r2);
            band[2 * width + col] = sub(r2, r1);
            band[3 * width + col] = sub(r1, r3);
        }
        for q in 0..run.len {
            // (Bᵀ d) B: columns 2q .. 2q + 4 of each combined row, combined the same way.
            let v = &mut pair_tiles[done % 2];
            for i in 0..4 {
                let b = &band[i * width + 2 * q..][..4];
                v[4 * i] = sub(b[0], b[2]);
                v[4 * i + 1] = add(b[1], b[2]);
                v[4 * i + 2] = sub(b[2], b[1]);
                v[4 * i + 3] = sub(b[1], b[3]);
            }
            done += 1;
            if done % 2 == 0 {
                emit_columns(&pair_tiles[0], &pair_tiles[1], done / 2 - 1, half, out);
            }
        }
    }
    if done % 2 == 1 {
        emit_columns(&pair_tiles[0], &[[0.0; L]; 16], done / 2, half, out);
    }
}

/// Pair row `pair` of the 16 B blocks: lane l of tiles `even` and `odd` is channel `half · 16 + l` of the panel.
#[inline(always)]
fn emit_columns(even: &Tile, odd: &Tile, pair: usize, half: usize, out: &mut [&mut [u32]]) {
    for (k, block) in out.iter_mut().enumerate() {
        block[pair * NR + half * L..][..L].copy_from_slice(&pairs(&even[k], &odd[k]));
    }
}

/// Lane by lane, `even` and `odd` rounded to bf16 as k-pairs, in a whole-vector loop that the compiler vectorises
/// (written into the two 8-lane halves of A's panels directly, the rounding stayed scalar: a fifth of block5's
/// weight gradient).
#[inline(always)]
fn pairs(even: &Lanes, odd: &Lanes) -> [u32; L] {
    let mut out = [0u32; L];
    for (l, p) in out.iter_mut().enumerate() {
        *p = bf16::pair(even[l], odd[l]);
    }
    out
}

dispatch! {
    /// The output-gradient transform of tiles `first .. first + count` for output channels `oc0 .. oc0 + 16`:
    /// lanes 0..8 into the pieces `lo` of the 16 A blocks (one panel), lanes 8..16 into `hi` (the next).
    fn pack_grad_lanes(
        dy: &[f32],
        g: &ConvGeom,
        tiles: (usize, usize),
        oc0: usize,
        lo: &mut [&mut [u32]],
        hi: &mut [&mut [u32]],
    ) => pack_grad_lanes_body
}

#[inline(always)]
fn pack_grad_lanes_body(
    dy: &[f32],
    g: &ConvGeom,
    (first, count): (usize, usize),
    oc0: usize,
    lo: &mut [&mut [u32]],
    hi: &mut [&mut [u32]],
) {
    let (o, ho, wo) = (g.o, g.ho, g.wo);
    let runs = shared::runs(first, count, ho.div_ceil(2), wo.div_ceil(2));
    let width = 2 * runs.iter().map(|r| r.len).max().unwrap_or(0);
    // The run's two output-gradient rows, channel-interleaved (zero past the edges).
    let mut band = vec![[0f32; L]; 2 * width];
    let mut pair_tiles: [Tile; 2] = [[[0.0; L]; 16]; 2];
    let mut done = 0;
    for run in &runs {
        let (cols, x0) = (2 * run.len, 2 * run.tx0);
        let inside = wo.saturating_sub(x0).min(cols);
        band[..cols].fill([0.0; L]);
        band[width..][..cols].fill([0.0; L]);
        for r in 0..2 {
            let yy = 2 * run.ty + r;
            if yy >= ho {
                continue;
            }
            let first = (run.img * o + oc0) * ho * wo + yy * wo + x0;
            rows_to_lanes(dy, first, ho * wo, inside, &mut band[r * width..]);
        }
        for q in 0..run.len {
            let (a0, b0) = (band[2 * q], band[2 * q + 1]);
            let (a1, b1) = (band[width + 2 * q], band[width + 2 * q + 1]);
            // A y Aᵀ: rows [a0, b0], [a0 + a1, b0 + b1], [a0 − a1, b0 − b1], [−a1, −b1]; each row [a, b] becomes
            // [a, a + b, a − b, −b].
            let rows = [
                (a0, b0),
                (add(a0, a1), add(b0, b1)),
                (sub(a0, a1), sub(b0, b1)),
                (neg(a1), neg(b1)),
            ];
            let y = &mut pair_tiles[done % 2];
            for (i, (a, b)) in rows.into_iter().enumerate() {
                y[4 * i] = a;
                y[4 * i + 1] = add(a, b);
                y[4 * i + 2] = sub(a, b);
                y[4 * i + 3] = neg(b);
            }
            done += 1;
            if done % 2 == 0 {
                emit_rows(&pair_tiles[0], &pair_tiles[1], done / 2 - 1, lo, hi);
            }
        }
    }
    if done % 2 == 1 {
        emit_rows(&pair_tiles[0], &[[0.0; L]; 16], done / 2, lo, hi);
    }
}

/// Pair `pair` of the 16 A blocks' two panels: lane l < 8 of tiles `even` and `odd` is row l of `lo`'s panel,
/// lane 8 + l row l of `hi`'s.
#[inline(always)]
fn emit_rows(even: &Tile, odd: &Tile, pair: usize, lo: &mut [&mut [u32]], hi: &mut [&mut [u32]]) {
    for (k, (lo, hi)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
        let p = pairs(&even[k], &odd[k]);
        lo[pair * MR..][..MR].copy_from_slice(&p[..MR]);
        hi[pair * MR..][..MR].copy_from_slice(&p[MR..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::sample_values as values;

    /// Against the transforms along tiles: the same rounded products, summed in another order. Odd sizes (a last
    /// tile row and column cut by the edge), padding 0–2, 48 input channels (half a last panel), chunks of odd and
    /// even tile counts, and both kernels that run everywhere or here.
    #[test]
    fn the_channel_vectorised_weight_gradient_equals_the_one_along_tiles() {
        let mut kernels = vec![Bf16Kernel::AmxEmulated];
        kernels.extend(bf16::kernel());
        for kernel in kernels {
            for (n, c, h, w, o, pad, tc) in [
                (2, 48, 9, 7, 32, 1, 1000),
                (3, 16, 5, 6, 16, 1, 7),
                (1, 32, 4, 4, 48, 0, 2),
                (2, 16, 3, 5, 16, 2, 5),
            ] {
                let g = ConvGeom::new(n, c, h, w, o, 3, pad);
                let x = values(n * c * h * w, 1);
                let dy = values(n * o * g.p(), 2);
                let (mut want, mut want_b) = (vec![0f32; o * c * 9], vec![0f32; o]);
                super::super::winograd_f2::weight_grad_bf16_along_tiles(kernel, &x, &g, &dy, &mut want, &mut want_b);
                let (mut got, mut got_b) = (vec![1f32; o * c * 9], vec![1f32; o]);
                weight_grad_in_chunks(kernel, &x, &g, &dy, tc, &mut got, &mut got_b);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                assert!(err < 1e-5, "{kernel:?} {g:?} in chunks of {tc}: {err:.2e} relative");
                assert_eq!(got_b, want_b);
            }
        }
    }

    #[test]
    fn pair_ranges_cover_every_pair_once() {
        for (kp, parts) in [(400, 1), (400, 3), (7, 16), (1, 4), (0, 2)] {
            let r = pair_ranges(kp, parts);
            assert_eq!(r.first().map_or(0, |r| r.0), 0);
            assert_eq!(r.last().map_or(0, |r| r.1), kp, "kp {kp}, parts {parts}");
            assert!(r.windows(2).all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1));
            assert!(r.len() <= parts.max(1));
        }
    }

    #[test]
    fn split_blocks_gives_each_range_its_piece_of_every_block() {
        let mut blocks = vec![(0..10u32).collect::<Vec<_>>(), (10..20).collect()];
        let pieces = split_blocks(&mut blocks, &[(1, 3), (3, 4), (7, 10)]);
        let seen: Vec<Vec<Vec<u32>>> = pieces
            .into_iter()
            .map(|p| p.into_iter().map(|s| s.to_vec()).collect())
            .collect();
        assert_eq!(seen[0], [vec![1, 2], vec![11, 12]]);
        assert_eq!(seen[1], [vec![3], vec![13]]);
        assert_eq!(seen[2], [vec![7, 8, 9], vec![17, 18, 19]]);
    }
}
