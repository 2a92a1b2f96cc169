//! Transposes in AVX-512 registers: 16 rows of 16 32-bit values, and 16 strided rows of f32 into 16-lane columns
//! (the channel-interleaved bands of the bf16 weight gradient). Chosen at run time; scalar loops elsewhere.

/// `out[j][l] = src[first + l · stride + j]` for j < count and l < 16: 16 rows, `stride` apart, as columns.
///
/// Panics when a row runs past `src` or `out` holds fewer than `count` columns.
pub(super) fn rows_to_lanes(src: &[f32], first: usize, stride: usize, count: usize, out: &mut [[f32; 16]]) {
    if count == 0 {
        return;
    }
    assert!(
        first + 15 * stride + count <= src.len() && out.len() >= count,
        "transpose: 16 rows of {count} from {first}, {stride} apart, do not fit"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F was detected just now; the rows and `out` were checked above.
        unsafe { avx512::rows_to_lanes(src, first, stride, count, out) };
        return;
    }
    for (l, row) in (0..16).map(|l| (l, &src[first + l * stride..][..count])) {
        for (o, v) in out.iter_mut().zip(row) {
            o[l] = *v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    /// [`super::rows_to_lanes`] in blocks of 16 columns: 16 masked row loads, one register transpose, 16 stores.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; the rows and `out` as [`super::rows_to_lanes`] checks them.
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::rows_to_lanes`, which checks them.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_to_lanes(src: &[f32], first: usize, stride: usize, count: usize, out: &mut [[f32; 16]]) {
        for j0 in (0..count).step_by(16) {
            let n = (count - j0).min(16);
            let mask = ((1u32 << n) - 1) as u16;
            // SAFETY: the masked loads read columns j0 .. j0 + n of the 16 rows, inside src (the contract).
            let rows: [__m512i; 16] = std::array::from_fn(|l| unsafe {
                _mm512_castps_si512(_mm512_maskz_loadu_ps(mask, src.as_ptr().add(first + l * stride + j0)))
            });
            for (j, v) in transpose16(rows).iter().take(n).enumerate() {
                // SAFETY: column j0 + j < count ≤ out.len() holds 16 f32.
                unsafe { _mm512_storeu_si512(out[j0 + j].as_mut_ptr() as *mut _, *v) };
            }
        }
    }

    /// The transpose of a 16 × 16 matrix of u32 held as 16 rows: element j of row i becomes element i of row j.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
        // Within each 128-bit lane: 2 × 2 blocks of u32, then of u64; u[4i + c] then holds, in lane L, rows
        // 4i .. 4i + 4 at column 4L + c.
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(a, b)
            } else {
                _mm512_unpackhi_epi32(a, b)
            }
        });
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (q, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + c / 2], t[4 * q + 2 + c / 2]);
            if c % 2 == 0 {
                _mm512_unpacklo_epi64(a, b)
            } else {
                _mm512_unpackhi_epi64(a, b)
            }
        });
        // Across lanes: row 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
        let mut out = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let (a, b, cc, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
            let (v0, v1) = (_mm512_shuffle_i32x4::<0x44>(a, b), _mm512_shuffle_i32x4::<0xee>(a, b));
            let (w0, w1) = (_mm512_shuffle_i32x4::<0x44>(cc, d), _mm512_shuffle_i32x4::<0xee>(cc, d));
            out[c] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
            out[4 + c] = _mm512_shuffle_i32x4::<0xdd>(v0, w0);
            out[8 + c] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
            out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v1, w1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_lanes_at_every_column_count() {
        let src: Vec<f32> = (0..2000).map(|i| i as f32).collect();
        for (first, stride, count) in [(0, 50, 5), (7, 40, 16), (3, 60, 37), (0, 16, 0)] {
            let mut out = vec![[-1f32; 16]; count + 2];
            rows_to_lanes(&src, first, stride, count, &mut out);
            for (j, col) in out.iter().enumerate() {
                for (l, v) in col.iter().enumerate() {
                    let want = if j < count { src[first + l * stride + j] } else { -1.0 };
                    assert_eq!(*v, want, "column {j}, lane {l} of {count}");
                }
            }
        }
    }
}
