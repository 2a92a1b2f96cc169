//! The Winograd forward's input transform in AVX-512 intrinsics: `V = Bᵀ d B` for up to 16 tiles of a run at once
//! (one tile per lane). In bf16 ([`pack`]) it is rounded, interleaved into channel pairs in registers and stored
//! straight into the packed operand of the 16 products (the layout of [`super::bf16::pack_b`]); in f32
//! ([`transform_f32`]) stored as the f32 products read it.
//!
//! The portable form ([`super::winograd_f2`]'s `input_transform_packed`) transforms a channel along a run into f32
//! rows and packs them in a second pass, which made it a large share of the bf16 forward.
//! Here the even and odd input columns of a row are split with two permutes, so that tile q's four columns are
//! lane q of four registers, and the whole transform is 32 vector adds per channel and 16 tiles.

use super::bf16::NR;
use super::geom::ConvGeom;
use super::winograd_shared::Run;

/// Tiles per vector.
const LANES: usize = 16;

/// True when this CPU runs [`pack`]: AVX-512 F/BW and AVX512-BF16.
pub fn available() -> bool {
    super::bf16::has_avx512_bf16()
}

/// V_k of the chunk's tiles `t0 .. t0 + nt` into `packed`: block k at `k · block`, each holding C × nt as
/// [`super::bf16::pack_b`] lays it out (channel pairs, panels of NR tiles, the pair's second value zero past an
/// odd C; columns past nt are left as they are, their products never read).
///
/// Panics when this CPU lacks the instructions or a buffer does not fit.
pub(super) fn pack(x: &[f32], g: &ConvGeom, (t0, nt): (usize, usize), block: usize, packed: &mut [u32]) {
    assert!(available(), "the AVX-512 Winograd input transform needs AVX512-BF16");
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let kp = g.c.div_ceil(2);
    assert_eq!(
        x.len(),
        g.n * g.c * g.h * g.w,
        "Winograd bf16: input does not fit {g:?}"
    );
    assert!(t0 + nt <= g.n * th * tw, "Winograd bf16: tiles past the batch");
    assert!(
        block >= nt.div_ceil(NR) * kp * NR && packed.len() >= 16 * block,
        "Winograd bf16: packed input too short"
    );
    let pieces = pieces(super::winograd_shared::runs(t0, nt, th, tw));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available() saw AVX-512 F/BW and AVX512-BF16; x holds the N × C × H × W input and packed 16 blocks
    // of `block` ≥ the packed length (asserted above); every piece lies inside one 16-tile group of the chunk and
    // inside one image row of tiles (pieces()).
    unsafe {
        avx512::pack(x, g, &pieces, kp, block, packed)
    }
}

/// True when [`transform_f32`] may run: this CPU has AVX-512 and `CATDOG_SIMD` allows it
/// ([`super::simd::avx512_kernels`]).
pub fn available_f32() -> bool {
    super::simd::avx512_kernels()
}

/// The f32 Winograd's transformed input of the chunk's tiles `t0 .. t0 + nt`: `v[k][ci][t]`, block k at
/// `k · C · nt`, row ci of nt values.
///
/// Panics when this CPU lacks AVX-512 F or a buffer does not fit.
pub(super) fn transform_f32(x: &[f32], g: &ConvGeom, (t0, nt): (usize, usize), v: &mut [f32]) {
    assert!(available_f32(), "the AVX-512 Winograd input transform needs AVX-512 F");
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    assert_eq!(x.len(), g.n * g.c * g.h * g.w, "Winograd: input does not fit {g:?}");
    assert!(t0 + nt <= g.n * th * tw, "Winograd: tiles past the batch");
    assert!(v.len() >= 16 * g.c * nt, "Winograd: transformed input too short");
    let pieces = pieces(super::winograd_shared::runs(t0, nt, th, tw));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: available_f32() saw AVX-512 F; x holds the N × C × H × W input and v 16 blocks of C × nt (asserted
    // above); every piece holds at most 16 tiles of the chunk (pieces()).
    unsafe {
        avx512::transform_f32(x, g, &pieces, nt, v)
    }
}

/// The runs cut at every 16th tile of the chunk: each piece fits one vector and one 32-tile panel.
fn pieces(runs: Vec<Run>) -> Vec<Run> {
    let mut out = Vec::with_capacity(runs.len() * 2);
    for mut run in runs {
        while run.len > 0 {
            let len = run.len.min(LANES - run.t % LANES);
            out.push(Run { len, ..run });
            (run.t, run.tx0, run.len) = (run.t + len, run.tx0 + len, run.len - len);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{ConvGeom, Run, LANES, NR};

    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512-BF16; `x` must be the N × C × H × W input of `g`, `packed` hold 16
    /// blocks of `block` u32 laid out for kp = ⌈C/2⌉ pairs, and every piece lie inside one 16-tile group (so that
    /// its columns `t % NR ..` stay inside one panel row).
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::pack`, which checks all of it.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack(x: &[f32], g: &ConvGeom, pieces: &[Run], kp: usize, block: usize, packed: &mut [u32]) {
        // Lane 2i of a pair vector is the low channel's tile i, lane 2i + 1 the high channel's: cvtne2ps puts
        // the low channel's 16 values in lanes 0..16 and the high one's in 16..32.
        let interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        let mut lo = [_mm512_setzero_ps(); 16];
        let mut hi = [_mm512_setzero_ps(); 16];
        for p in 0..kp {
            for piece in pieces {
                // SAFETY: channel 2p < C, and 2p + 1 when it is used; the piece lies inside the batch.
                unsafe {
                    transform(x, g, piece, 2 * p, &mut lo);
                    if 2 * p + 1 < g.c {
                        transform(x, g, piece, 2 * p + 1, &mut hi);
                    } else {
                        hi = [_mm512_setzero_ps(); 16];
                    }
                }
                let (panel, col) = (piece.t / NR, piece.t % NR);
                let mask: __mmask16 = ((1u32 << piece.len) - 1) as u16;
                for k in 0..16 {
                    let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi[k], lo[k]));
                    let pairs = _mm512_permutexvar_epi16(interleave, both);
                    // SAFETY: col + len ≤ NR (the piece stays in its 16-tile group), so the masked store writes
                    // columns col .. col + len of pair row p of this panel, inside block k.
                    unsafe {
                        let dst = packed.as_mut_ptr().add(k * block + panel * kp * NR + p * NR + col);
                        _mm512_mask_storeu_epi32(dst as *mut _, mask, pairs);
                    }
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512 F; `x` must be the N × C × H × W input of `g`, `v` hold 16 blocks of C × nt,
    /// and every piece at most 16 tiles of the chunk.
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::transform_f32`, which checks it.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transform_f32(x: &[f32], g: &ConvGeom, pieces: &[Run], nt: usize, v: &mut [f32]) {
        let mut out = [_mm512_setzero_ps(); 16];
        for ci in 0..g.c {
            for piece in pieces {
                // SAFETY: channel ci < C; the piece lies inside the batch.
                unsafe { transform(x, g, piece, ci, &mut out) };
                let mask: __mmask16 = ((1u32 << piece.len) - 1) as u16;
                for (k, o) in out.iter().enumerate() {
                    // SAFETY: piece.t + len ≤ nt, so the masked store writes row ci of block k, inside v.
                    unsafe { _mm512_mask_storeu_ps(v.as_mut_ptr().add((k * g.c + ci) * nt + piece.t), mask, *o) };
                }
            }
        }
    }

    /// V = Bᵀ d B of the piece's tiles (lane q: tile q) for channel `ch`, into `v[k]`.
    ///
    /// # Safety
    /// As [`pack`]; `ch` < C.
    #[inline]
    // SAFETY (callers): see "# Safety"; `pack` and `transform_f32` pass channels below C of their input.
    #[target_feature(enable = "avx512f")]
    unsafe fn transform(x: &[f32], g: &ConvGeom, piece: &Run, ch: usize, v: &mut [__m512; 16]) {
        let (h, w, pad) = (g.h as isize, g.w as isize, g.pad as isize);
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let plane = x.as_ptr().wrapping_add((piece.img * g.c + ch) * g.h * g.w);
        let x0 = 2 * piece.tx0 as isize - pad;
        // Lanes i of a load at column x0 + off that lie inside the row.
        let inside = |off: isize| -> __mmask16 {
            let first = x0 + off;
            let lo = (-first).clamp(0, LANES as isize);
            let hi = (w - first).clamp(lo, LANES as isize);
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        };
        let masks = [inside(0), inside(16), inside(2), inside(18)];
        // cols[r] = columns 2q, 2q + 1, 2q + 2, 2q + 3 of input row r for the 16 tiles q (zero outside the image).
        let mut cols = [[_mm512_setzero_ps(); 4]; 4];
        for (r, col) in cols.iter_mut().enumerate() {
            let y = 2 * piece.ty as isize - pad + r as isize;
            if y < 0 || y >= h {
                continue;
            }
            let row = plane.wrapping_offset(y * w + x0);
            // The same row two channels on, which the next pass over the chunk's pieces reads: its loads were the
            // hot spot here (cache misses the hardware prefetcher did not foresee, across planes). A prefetch does
            // not fault, so past the last channel it is harmless.
            let ahead = row.wrapping_add(2 * g.h * g.w);
            for line in [0, 16, 32] {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
            }
            // SAFETY: each masked load reads only lanes inside this row of the plane (the masks), so inside x;
            // lanes outside are not accessed and read as zero.
            let [a, b, a2, b2] = unsafe {
                [
                    _mm512_maskz_loadu_ps(masks[0], row),
                    _mm512_maskz_loadu_ps(masks[1], row.wrapping_offset(16)),
                    _mm512_maskz_loadu_ps(masks[2], row.wrapping_offset(2)),
                    _mm512_maskz_loadu_ps(masks[3], row.wrapping_offset(18)),
                ]
            };
            *col = [
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
                _mm512_permutex2var_ps(a2, even, b2),
                _mm512_permutex2var_ps(a2, odd, b2),
            ];
        }
        #[allow(clippy::needless_range_loop)] // j picks column j of all four rows
        for j in 0..4 {
            // Bᵀ d over the rows, column j: r0 − r2, r1 + r2, r2 − r1, r1 − r3.
            let (r0, r1, r2, r3) = (cols[0][j], cols[1][j], cols[2][j], cols[3][j]);
            cols[0][j] = _mm512_sub_ps(r0, r2);
            cols[1][j] = _mm512_add_ps(r1, r2);
            cols[2][j] = _mm512_sub_ps(r2, r1);
            cols[3][j] = _mm512_sub_ps(r1, r3);
        }
        for (i, b) in cols.iter().enumerate() {
            // (Bᵀ d) B over the columns: a0 − a2, a1 + a2, a2 − a1, a1 − a3.
            v[4 * i] = _mm512_sub_ps(b[0], b[2]);
            v[4 * i + 1] = _mm512_add_ps(b[1], b[2]);
            v[4 * i + 2] = _mm512_sub_ps(b[2], b[1]);
            v[4 * i + 3] = _mm512_sub_ps(b[1], b[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::kernels::sample_values as values;
    use crate::kernels::winograd_f2;

    /// Odd channel counts, padding 0–2, chunks that start inside a run, runs longer than 16 tiles, edge tiles:
    /// (geometry, chunk start, chunk length, input, tile rows, tile columns).
    fn cases(seed: u64) -> Vec<(ConvGeom, usize, usize, Vec<f32>, usize, usize)> {
        [
            (2, 5, 9, 9, 1, 0, 50),
            (1, 8, 18, 18, 1, 7, 74),
            (3, 4, 7, 11, 0, 3, 30),
            (2, 6, 5, 6, 2, 0, 32),
            (1, 2, 40, 41, 1, 17, 350),
        ]
        .into_iter()
        .map(|(n, c, h, w, pad, t0, nt)| {
            let g = ConvGeom::new(n, c, h, w, 3, 3, pad);
            let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
            (g, t0, nt.min(n * th * tw - t0), values(n * c * h * w, seed), th, tw)
        })
        .collect()
    }

    /// Bit for bit the portable transform's packing (the same adds in the same order, the same rounding).
    #[test]
    fn the_avx512_input_transform_packs_what_the_portable_one_does() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for (g, t0, nt, x, th, tw) in cases(7) {
            let block = nt.div_ceil(NR) * g.c.div_ceil(2) * NR;
            let (mut want, mut got) = (vec![0u32; 16 * block], vec![0u32; 16 * block]);
            let mut scratch = vec![0f32; 128 * nt];
            winograd_f2::input_transform_packed(&x, &g, t0, nt, th, tw, &mut scratch, &mut want);
            pack(&x, &g, (t0, nt), block, &mut got);
            let first_diff = want.iter().zip(&got).position(|(a, b)| a != b);
            assert_eq!(first_diff, None, "{g:?}, tiles {t0}..{}", t0 + nt);
        }
    }

    /// The f32 form, bit for bit the portable transform's `v[k][ci][t]`.
    #[test]
    fn the_avx512_f32_input_transform_writes_what_the_portable_one_does() {
        if !available_f32() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        for (g, t0, nt, x, th, tw) in cases(9) {
            let (mut want, mut got) = (vec![0f32; 16 * g.c * nt], vec![0f32; 16 * g.c * nt]);
            winograd_f2::input_transform(&x, &g, t0, nt, th, tw, &mut want);
            transform_f32(&x, &g, (t0, nt), &mut got);
            let first_diff = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first_diff, None, "{g:?}, tiles {t0}..{}", t0 + nt);
        }
    }

    #[test]
    fn pieces_stay_inside_16_tile_groups_and_cover_every_tile_once() {
        let runs = crate::kernels::winograd_shared::runs(5, 60, 3, 7);
        let pieces = pieces(runs);
        let mut next = 0;
        for p in &pieces {
            assert_eq!(p.t, next, "in order, no gap");
            assert!(p.len >= 1 && p.t % LANES + p.len <= LANES, "{p:?}");
            next += p.len;
        }
        assert_eq!(next, 60);
    }
}
