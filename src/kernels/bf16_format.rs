//! The bf16 numbers and the panel shape that the AVX512-BF16 and AMX kernels both read and write.

/// Rows of A per panel, and of C per micro-tile.
pub const MR: usize = 8;
/// Columns of B per panel, and of C per micro-tile (two 16-lane registers).
pub const NR: usize = 32;

/// `x` rounded to bf16 (nearest, ties to even), as its 16 bits. NaN stays NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    // A select, not a branch, so that loops of conversions vectorise (a quiet NaN keeps its sign).
    let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
    (if nan { (bits >> 16) | 0x40 } else { rounded }) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}
