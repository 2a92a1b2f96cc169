//! The bf16 Winograd F(2×2) forward's output transform in AVX-512 intrinsics: for one panel of products (MR
//! output channels × NR tiles, see [`super::winograd`]'s `products_and_output`), `Aᵀ M A` + bias, ReLU and the
//! optional 2×2 max-pool of 16 tiles at once (one tile per lane), stored straight from the registers into the
//! output rows with masked stores.
//!
//! The portable form ([`super::winograd`]'s `epilogue`, compiled for AVX2) builds each output row in a stack
//! array and copies it out with a `memcpy` per run of tiles. Measured against it, alternating
//! three rounds of `bench forward --precision bf16 --layers --iters 5..8` (AMD EPYC Zen 5, 2 threads, batch 32):
//! 3–6% on every layer from block1_conv2 to block3_conv3 in one pair of builds, the whole forward 94.5 → 98.2
//! images/s in another. A single whole-forward A/B could not tell (its noise here is ±5%).

use super::bf16::{MR, NR};
use super::conv::ConvGeom;
use super::raw::SendPtr;
use super::winograd::panel_runs;

/// True when this CPU runs [`epilogue`]: AVX-512 F, and `CATDOG_SIMD` lets the hand-written AVX-512 kernels run.
pub fn available() -> bool {
    super::simd::avx512_kernels()
}

/// The output transform of one panel: `tiles[k][r·NR + q]` is product k of channel `oc0 + r`, tile `at[q]`
/// (image, tile row, tile column); the same contract and the same arithmetic, bit for bit, as the portable
/// `winograd::epilogue`.
///
/// `outp` must point at the N × O × Ho × Wo output of `g` (⌊Ho/2⌋ × ⌊Wo/2⌋ with `pool`), of which this call alone
/// writes channels `oc0 .. oc0 + rows` of these tiles: `forward_with` checks the output's length before it
/// hands out the pointer, and gives each chunk of tiles and each panel of channels to one task.
///
/// Panics when this CPU lacks AVX-512, `rows` exceeds MR, `at` holds more than NR tiles or a tile lies outside
/// `g`.
#[allow(clippy::too_many_arguments)]
pub(super) fn epilogue(
    tiles: [&[f32; MR * NR]; 16],
    g: &ConvGeom,
    oc0: usize,
    rows: usize,
    at: &[(usize, usize, usize)],
    bias: Option<&[f32]>,
    relu: bool,
    pool: bool,
    outp: SendPtr,
) {
    assert!(available(), "the AVX-512 Winograd output transform needs AVX-512 F");
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    assert!(
        rows <= MR && oc0 + rows <= g.o && at.len() <= NR,
        "Winograd output: {rows} rows from {oc0}, {} tiles do not fit a panel of {g:?}",
        at.len()
    );
    assert!(
        at.iter().all(|&(img, ty, tx)| img < g.n && ty < th && tx < tw),
        "Winograd output: a tile lies outside {g:?}"
    );
    assert!(
        bias.is_none_or(|b| b.len() == g.o),
        "Winograd output: bias does not fit {g:?}"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw AVX-512 F; the tiles and channels lie inside g (asserted above) and outp points at
    // g's output, which this call alone writes there (this function's contract, kept by forward_with).
    unsafe {
        avx512::epilogue(tiles, g, oc0, rows, at, bias, relu, pool, outp)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{panel_runs, ConvGeom, SendPtr, MR, NR};

    /// Tiles per vector.
    const L: usize = 16;

    /// Lanes `lo .. hi` of a vector, clipped to 0 .. 16.
    fn lanes(lo: isize, hi: isize) -> __mmask16 {
        let (lo, hi) = (lo.clamp(0, L as isize), hi.clamp(0, L as isize));
        if hi <= lo {
            return 0;
        }
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }

    /// # Safety
    /// The CPU must have AVX-512 F; the tiles and channels lie inside `g` and `outp` points at its output, of
    /// which this call alone writes these channels of these tiles (see `super::epilogue`).
    #[allow(clippy::too_many_arguments)]
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::epilogue`, which checks the sizes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn epilogue(
        tiles: [&[f32; MR * NR]; 16],
        g: &ConvGeom,
        oc0: usize,
        rows: usize,
        at: &[(usize, usize, usize)],
        bias: Option<&[f32]>,
        relu: bool,
        pool: bool,
        outp: SendPtr,
    ) {
        let (runs, nruns) = panel_runs(at);
        let runs = &runs[..nruns];
        // Tile q's two output columns side by side: lanes 2i, 2i + 1 of `low` are tile i of a and b, of `high`
        // tile 8 + i.
        let low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        for r in 0..rows {
            let oc = oc0 + r;
            let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[oc]));
            for first in (0..at.len()).step_by(L) {
                let mut m = [_mm512_setzero_ps(); 16];
                for (v, panel) in m.iter_mut().zip(&tiles) {
                    // SAFETY: r < MR and first + 16 ≤ NR, so the load reads row r of the panel, inside it.
                    *v = unsafe { _mm512_loadu_ps(panel.as_ptr().add(r * NR + first)) };
                }
                // SAFETY: this function runs with AVX-512 F.
                let e = unsafe { outputs(&m, b, relu) };
                for &(q0, len) in runs {
                    if q0 + len <= first || q0 >= first + L {
                        continue;
                    }
                    let (img, ty, tx0) = at[q0];
                    // SAFETY: the run's tiles and channel oc lie inside g and are this call's (the contract).
                    unsafe {
                        if pool {
                            let pooled = _mm512_max_ps(_mm512_max_ps(e[0], e[1]), _mm512_max_ps(e[2], e[3]));
                            store_pooled(pooled, g, (img, oc, ty, tx0), (q0, len), first, outp);
                        } else {
                            for (dy, (a, c)) in [(e[0], e[1]), (e[2], e[3])].into_iter().enumerate() {
                                let pairs = [_mm512_permutex2var_ps(a, low, c), _mm512_permutex2var_ps(a, high, c)];
                                store_row(pairs, g, (img, oc, 2 * ty + dy, tx0), (q0, len), first, outp);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The four outputs of 16 tiles, `Aᵀ M A` + b (ReLU'd with `relu`): the portable `tile_outputs`' adds in
    /// its order. Plain statements, no closures: a closure does not inherit `target_feature`, and each intrinsic
    /// in one becomes a call.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    // SAFETY (callers): `epilogue`, which runs with AVX-512 F.
    #[target_feature(enable = "avx512f")]
    unsafe fn outputs(m: &[__m512; 16], b: __m512, relu: bool) -> [__m512; 4] {
        let mut s0 = [_mm512_setzero_ps(); 4];
        let mut s1 = [_mm512_setzero_ps(); 4];
        for j in 0..4 {
            s0[j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
            s1[j] = _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
        }
        let mut e = [
            _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]), b),
            _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]), b),
            _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]), b),
            _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]), b),
        ];
        if relu {
            for v in &mut e {
                *v = _mm512_max_ps(*v, _mm512_setzero_ps());
            }
        }
        e
    }

    /// Stores output row y of channel oc for the run (q0, len) of the panel's tiles, from the two interleaved
    /// vectors of tiles `first .. first + 16`, clipped at the output's right edge and skipped past its bottom.
    ///
    /// # Safety
    /// As [`epilogue`]: (img, oc, ty = y / 2, tx0) and the run's tiles lie inside g's output, this call's.
    // SAFETY (callers): `epilogue`, with a run of the panel it was given and a channel of its rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_row(
        pairs: [__m512; 2],
        g: &ConvGeom,
        (img, oc, y, tx0): (usize, usize, usize, usize),
        (q0, len): (usize, usize),
        first: usize,
        outp: SendPtr,
    ) {
        if y >= g.ho {
            return;
        }
        let x0 = 2 * tx0;
        let n = (2 * len).min(g.wo - x0) as isize;
        let row = outp.get().wrapping_add(((img * g.o + oc) * g.ho + y) * g.wo + x0);
        for (half, v) in pairs.into_iter().enumerate() {
            // Lane l holds column 2·(t − q0) + l of the run's row, t the vector's first tile.
            let shift = 2 * ((first + 8 * half) as isize - q0 as isize);
            let mask = lanes(-shift, n - shift);
            // SAFETY: the masked lanes are columns 0 .. n of the run's row, inside row y of plane (img, oc);
            // the lanes outside the mask are not accessed, so their addresses may lie anywhere.
            unsafe { _mm512_mask_storeu_ps(row.wrapping_offset(shift), mask, v) };
        }
    }

    /// Stores pooled row ty of channel oc for the run (q0, len), from the pooled vector of tiles
    /// `first .. first + 16`, clipped at the pooled output's right edge and skipped past its bottom.
    ///
    /// # Safety
    /// As [`store_row`].
    // SAFETY (callers): as for `store_row`.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_pooled(
        pooled: __m512,
        g: &ConvGeom,
        (img, oc, ty, tx0): (usize, usize, usize, usize),
        (q0, len): (usize, usize),
        first: usize,
        outp: SendPtr,
    ) {
        let (ph, pw) = (g.ho / 2, g.wo / 2);
        if ty >= ph || tx0 >= pw {
            return;
        }
        let n = len.min(pw - tx0) as isize;
        let row = outp.get().wrapping_add(((img * g.o + oc) * ph + ty) * pw + tx0);
        let shift = first as isize - q0 as isize;
        // SAFETY: the masked lanes are pooled columns tx0 .. tx0 + n of row ty of plane (img, oc), inside the
        // pooled output; the lanes outside the mask are not accessed.
        unsafe { _mm512_mask_storeu_ps(row.wrapping_offset(shift), lanes(-shift, n - shift), pooled) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::test_values as values;
    use crate::kernels::winograd;

    /// Bit for bit what the portable epilogue stores, and nothing else: panels whose runs cross the 16-tile
    /// halves, start inside a tile row, end at odd right and bottom edges; fewer rows than MR; pooled or not.
    #[test]
    fn the_avx512_output_transform_stores_what_the_portable_one_does() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 (or CATDOG_SIMD keeps it out)");
            return;
        }
        // (n, ho, wo, o, first tile of the panel, tiles in it, oc0, rows)
        let cases = [
            (2, 9, 9, 8, 0, 32, 0, 8),
            (1, 7, 11, 12, 3, 20, 8, 4),
            (3, 5, 6, 8, 1, 29, 0, 5),
            (1, 37, 37, 16, 7, 32, 8, 8),
            (2, 2, 3, 8, 0, 4, 0, 8),
            (1, 18, 40, 8, 13, 17, 0, 3),
        ];
        for (i, &(n, ho, wo, o, t0, nt, oc0, rows)) in cases.iter().enumerate() {
            let g = ConvGeom::new(n, 4, ho, wo, o, 3, 1);
            let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
            let nt = nt.min(n * th * tw - t0);
            let at: Vec<_> = (t0..t0 + nt)
                .map(|t| (t / (th * tw), t % (th * tw) / tw, t % tw))
                .collect();
            let data = values(16 * MR * NR, 11 + i as u64);
            let tiles: [&[f32; MR * NR]; 16] =
                std::array::from_fn(|k| data[k * MR * NR..][..MR * NR].try_into().unwrap());
            let bias = values(o, 21 + i as u64);
            for (relu, pool) in [(false, false), (true, false), (true, true), (false, true)] {
                let mut want = vec![f32::NAN; g.output_len(pool)];
                let mut got = want.clone();
                let args = (&g, oc0, rows, &at[..], Some(&bias[..]), relu, pool);
                winograd::epilogue(
                    tiles,
                    args.0,
                    args.1,
                    args.2,
                    args.3,
                    args.4,
                    relu,
                    pool,
                    SendPtr::new(&mut want),
                );
                epilogue(
                    tiles,
                    args.0,
                    args.1,
                    args.2,
                    args.3,
                    args.4,
                    relu,
                    pool,
                    SendPtr::new(&mut got),
                );
                let first_diff = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(first_diff, None, "case {i}, relu {relu}, pool {pool}");
                assert!(want.iter().any(|v| !v.is_nan()), "case {i}: the panel stores something");
            }
        }
    }
}
