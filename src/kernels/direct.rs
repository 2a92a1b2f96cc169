//! Direct 3×3 convolution with bf16 products (`--precision bf16`; stride 1, padding 1, input and output channels
//! multiples of 32): each block of 32 output channels × 32 output positions takes its whole reduction (9 taps ×
//! C channels) in one kernel call, with no transform and no im2col. On AMX that call keeps C in the tile registers
//! from the first product to the last; there the Winograd transforms around the products, not the products,
//! took most of the time.
//!
//! Layouts:
//! - **Input**: each image's channel pairs as planes of u32 (the first channel of the pair in the low half),
//!   zero-padded to (H + 2) × (W + 2) and stored row after row. The input of output pixel (y, x) under tap
//!   (ky, kx) sits at plane position (y + ky)·(W + 2) + x + kx: the output's own position q = y·(W + 2) + x plus a
//!   tap offset. So 16 consecutive output positions read 16 consecutive u32 of a plane for each tap — one row of
//!   an AMX B tile, or one AVX-512 register — straight from the input. Positions x = W and W + 1 of each row are
//!   computed and thrown away (2/(W + 2) of the work).
//! - **Weights**: O × (9·C) in bf16 pairs, steps of 16 channel pairs through the 9 taps ([`DirectWeights`]);
//!   frozen layers keep them.
//! - **Output**: a band of rows at a time, per 32 channels, into a scratch buffer in the same row layout (C's rows
//!   are channels, so each stored tile row is 16 positions of one channel), then bias, ReLU and, for the frozen
//!   layers, the 2×2 max-pool on the way to the NCHW output.

use std::cell::RefCell;

use rayon::prelude::*;

use super::amx::{self, ConvCall, STEP, TAPS};
use super::bf16::{self, Bf16Kernel, RunnableKernel, MR};
use super::geom::{ConvGeom, Epilogue};
use super::raw::{Out, Pool, SendPtr};
use super::simd::dispatch;

/// Output channels, and output positions, per kernel call.
pub const BLOCK: usize = 32;

/// The most output positions of a band (its scratch: 32 channels × this many f32, 128 KiB).
const MAX_BAND_POSITIONS: usize = 1024;

/// Whether the direct convolution computes this geometry.
pub fn applicable(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad == 1 && g.c > 0 && g.c.is_multiple_of(BLOCK) && g.o > 0 && g.o.is_multiple_of(BLOCK)
}

/// The tap and channel pair of k-pair `k` of the direct convolution: steps of 16 channel pairs, each through the
/// 9 taps (k = (step·9 + tap)·16 + pair in step), so that a step's 16 input planes stay in L1 while all 9 taps
/// read them. Taps outer, channels inner read each input line from L2 about three times and ran clearly slower on
/// AMX than aligned line reads, which this order approaches without copies.
fn k_order(k: usize) -> (usize, usize) {
    let (step, rest) = (k / (TAPS * STEP), k % (TAPS * STEP));
    (rest / STEP, step * STEP + rest % STEP)
}

/// The weights (O × C × 3 × 3) as the direct convolution's A: O × (9·C) k-pairs in [`k_order`], packed in one
/// pass for `kernel` (trainable layers pack on every forward), 64-byte aligned so that each AMX tile row is one
/// cache line.
#[derive(Debug)]
pub struct DirectWeights {
    o: usize,
    c: usize,
    /// AMX's rows (row r's pairs at r·lda) or AVX512-BF16's panels of MR rows (pair p of row r at p·MR + r).
    amx: bool,
    data: Vec<u32>,
    /// Where the aligned values start in `data`.
    start: usize,
}

impl DirectWeights {
    /// Packs `weight` (O × C × 3 × 3) for `kernel`.
    ///
    /// Panics when `weight` is not O × C × 3 × 3 or C is odd.
    pub fn pack(kernel: Bf16Kernel, weight: &[f32], o: usize, c: usize) -> DirectWeights {
        assert_eq!(weight.len(), o * c * TAPS, "direct conv: weights are not {o}×{c}×3×3");
        Self::pack_with(kernel, o, c, |oc, ci, t| weight[(oc * c + ci) * TAPS + t])
    }

    /// Packs the weights of the input gradient of a convolution with `weight` (O × C × 3 × 3): the transposed
    /// convolution, C outputs from O inputs, each kernel turned 180°.
    ///
    /// Panics when `weight` is not O × C × 3 × 3 or O is odd.
    pub fn pack_flipped(kernel: Bf16Kernel, weight: &[f32], o: usize, c: usize) -> DirectWeights {
        assert_eq!(weight.len(), o * c * TAPS, "direct conv: weights are not {o}×{c}×3×3");
        Self::pack_with(kernel, c, o, |ci, oc, t| weight[(oc * c + ci) * TAPS + TAPS - 1 - t])
    }

    /// Packs the weights `at(output channel, input channel, tap)` of an O × C × 3 × 3 convolution.
    fn pack_with(
        kernel: Bf16Kernel,
        o: usize,
        c: usize,
        at: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> DirectWeights {
        assert!(
            c.is_multiple_of(2),
            "direct conv: {c} input channels, not an even number"
        );
        let amx = !matches!(kernel, Bf16Kernel::Avx512Bf16);
        let kp = TAPS * c / 2;
        let len = o.div_ceil(MR) * MR * kp;
        let mut data = vec![0u32; len + 16];
        let start = data.as_ptr().align_offset(64).min(16);
        let packed = &mut data[start..start + len];
        let pair = |oc: usize, k: usize| {
            let (t, cp) = k_order(k);
            u32::from(bf16::to_bf16(at(oc, 2 * cp, t))) | (u32::from(bf16::to_bf16(at(oc, 2 * cp + 1, t))) << 16)
        };
        if amx {
            packed.par_chunks_mut(kp).take(o).enumerate().for_each(|(oc, row)| {
                for (p, v) in row.iter_mut().enumerate() {
                    *v = pair(oc, p);
                }
            });
        } else {
            packed.par_chunks_mut(kp * MR).enumerate().for_each(|(i, panel)| {
                for r in 0..MR.min(o - i * MR) {
                    for p in 0..kp {
                        panel[p * MR + r] = pair(i * MR + r, p);
                    }
                }
            });
        }
        DirectWeights { o, c, amx, data, start }
    }

    fn values(&self) -> &[u32] {
        &self.data[self.start..self.start + self.o.div_ceil(MR) * MR * TAPS * self.c / 2]
    }
}

/// Whether the bf16 forward of `g` on `kernel` runs here rather than by Winograd. `CATDOG_BF16_CONV=direct` or
/// `winograd` forces one where it applies (for comparisons); otherwise the rule measured for each kernel.
pub fn chosen(kernel: Bf16Kernel, g: &ConvGeom) -> bool {
    if !applicable(g) || !runs_on(kernel) {
        return false;
    }
    if let Some(direct) = forced() {
        return direct;
    }
    match kernel {
        Bf16Kernel::Amx => true,
        // Winograd on every layer: since its AVX-512 input transform and fused output it is ahead of the direct
        // kernel on the 64-channel layers too (docs/performance.md).
        Bf16Kernel::Avx512Bf16 => false,
        // The tests call `forward` on it themselves.
        Bf16Kernel::AmxEmulated => false,
    }
}

/// Whether the direct convolution can run on `kernel` here: on AMX, only after its own self-check.
fn runs_on(kernel: Bf16Kernel) -> bool {
    match kernel {
        Bf16Kernel::Amx => *amx::conv_status() == amx::Amx::Ready,
        Bf16Kernel::Avx512Bf16 | Bf16Kernel::AmxEmulated => true,
    }
}

/// `CATDOG_BF16_CONV`: Some(true) for `direct`, Some(false) for `winograd`, None when unset.
fn forced() -> Option<bool> {
    use super::overrides::{Bf16ConvSwitch, KernelOverrides};
    KernelOverrides::current()
        .bf16_conv
        .map(|c| c == Bf16ConvSwitch::Direct)
}

/// How a layer's output rows are split into bands, and the input planes' size.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Padded row length, W + 2.
    wp: usize,
    /// Output rows computed: all of them, or with the pool the even count it reads.
    rows: usize,
    /// Output rows per band (even with the pool).
    band: usize,
    /// u32 per pair plane (the padded image and the slack the last blocks read past it).
    plane: usize,
}

impl Plan {
    fn new(g: &ConvGeom, pool: bool) -> Plan {
        let wp = g.w + 2;
        let rows = if pool { g.ho / 2 * 2 } else { g.ho };
        let step = if pool { 2 } else { 1 };
        let band = best_band(rows, wp, step);
        // The last block of the last band ends by (rows·wp rounded up to a block) and reads up to 2·wp + 2 past
        // its end; packing a row writes whole panels of bf16::NR past its start.
        let reads = (rows * wp).div_ceil(BLOCK) * BLOCK + BLOCK + 2 * wp + 2;
        let packs = (g.h + 1) * wp + 1 + g.w.div_ceil(bf16::NR) * bf16::NR;
        // Whole cache lines, an odd number of them: a B tile's 16 rows, one per plane, then fall in 16 different
        // L1 sets (an even count of lines would crowd them into fewer sets).
        let lines = reads.max(packs).max((g.h + 2) * wp).div_ceil(16);
        let plane = (lines | 1) * 16;
        Plan { wp, rows, band, plane }
    }

    fn bands(&self) -> usize {
        self.rows.div_ceil(self.band)
    }

    /// The kernel calls (blocks of 32 positions) of a band of `rows` rows.
    fn blocks(&self, rows: usize) -> usize {
        (rows * self.wp).div_ceil(BLOCK)
    }
}

/// The band height (a multiple of `step`) with the fewest kernel calls over `rows` rows: each band's positions
/// are rounded up to a block of 32, so at 9 × 9 a band of 8 rows (88 positions, 3 calls) beats 4 bands of 2 (4
/// calls). Ties go to the lower band.
fn best_band(rows: usize, wp: usize, step: usize) -> usize {
    let most = (MAX_BAND_POSITIONS / wp / step * step).clamp(step, rows.max(step));
    let calls = |band: usize| {
        let full = rows / band * (band * wp).div_ceil(BLOCK);
        full + (rows % band * wp).div_ceil(BLOCK)
    };
    (1..=most / step)
        .map(|i| i * step)
        .min_by_key(|&b| (calls(b), b))
        .unwrap_or(step)
}

static PLANES: Pool<u32> = Pool::new();

thread_local! {
    /// A band's output: 32 channels × the band's positions.
    static BAND: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The forward convolution `out = act(b + w ⊛ x)` (NCHW f32 in and out) with bf16 products on `kernel`, from the
/// weights packed for it; with `pool`, the 2×2/2 max-pool of that (N × O × ho/2 × wo/2). Stores every value of
/// `out` (which need not be initialised).
///
/// Panics when the geometry is not [`applicable`], a buffer does not fit it, or this CPU cannot run `kernel`.
pub fn forward<'o>(
    kernel: Bf16Kernel,
    x: &[f32],
    g: &ConvGeom,
    weights: &DirectWeights,
    epi: Epilogue,
    out: impl Into<Out<'o>>,
) {
    let Epilogue { bias, relu, pool } = epi;
    let mut out = out.into();
    assert!(
        applicable(g),
        "direct conv: {g:?} is not 3×3, padding 1, channels multiples of {BLOCK}"
    );
    g.check_forward("direct conv", x, bias, out.len(), pool);
    assert!(
        (weights.o, weights.c) == (g.o, g.c) && weights.amx == !matches!(kernel, Bf16Kernel::Avx512Bf16),
        "direct conv: packed weights do not fit {g:?} on {}",
        kernel.name()
    );
    let runnable = kernel.checked();
    assert!(
        runs_on(kernel),
        "direct conv: the AMX kernel did not pass its self-check"
    );
    let plan = Plan::new(g, pool);
    if out.is_empty() {
        return;
    }
    let image_len = g.c / 2 * plan.plane;
    let mut planes = PLANES.take(g.n * image_len);
    pack_input(x, g, &plan, &mut planes);
    let (oblocks, bands) = (g.o / BLOCK, plan.bands());
    let outp = out.ptr();
    let band_store = BandStore {
        g,
        wp: plan.wp,
        bias,
        relu,
        pool,
        outp,
    };
    (0..g.n * bands * oblocks).into_par_iter().for_each(|unit| {
        let (ob, band_index, img) = (unit % oblocks, unit / oblocks % bands, unit / oblocks / bands);
        let y0 = band_index * plan.band;
        let rows = plan.band.min(plan.rows - y0);
        let calls = plan.blocks(rows);
        let ldc = calls * BLOCK;
        BAND.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            if scratch.len() < BLOCK * ldc {
                scratch.resize(BLOCK * ldc, 0.0);
            }
            let image = &planes[img * image_len..][..image_len];
            run_band(
                runnable,
                weights,
                ob,
                image,
                &plan,
                y0 * plan.wp,
                calls,
                &mut scratch,
                ldc,
            );
            epilogue(&band_store, &scratch, ldc, img, y0, rows, ob);
        });
    });
    PLANES.give(planes, 1);
}

/// The input gradient of the convolution `g` with `weight` (O × C × 3 × 3): `dx` (N × C × H × W) from `dy`
/// (N × O × H × W), the direct convolution of dy with the flipped transpose of the weights (stride 1 and padding
/// 1 make that exact), products in bf16 on `kernel`.
///
/// Panics as [`forward`] does for the transposed geometry.
pub fn input_grad(kernel: Bf16Kernel, dy: &[f32], g: &ConvGeom, weight: &[f32], dx: &mut [f32]) {
    let gt = ConvGeom::new(g.n, g.o, g.ho, g.wo, g.c, g.k, g.k - 1 - g.pad);
    let flipped = DirectWeights::pack_flipped(kernel, weight, g.o, g.c);
    forward(kernel, dy, &gt, &flipped, Epilogue::NONE, dx)
}

/// Each image's channel pairs as zero-padded planes of u32 pairs (see the module's notes), `plan.plane` apart.
fn pack_input(x: &[f32], g: &ConvGeom, plan: &Plan, out: &mut [u32]) {
    let (pairs, hw, wp) = (g.c / 2, g.h * g.w, plan.wp);
    let packed_w = g.w.div_ceil(bf16::NR) * bf16::NR;
    out.par_chunks_mut(plan.plane).enumerate().for_each(|(i, plane)| {
        let (img, p) = (i / pairs, i % pairs);
        let lo = &x[(img * g.c + 2 * p) * hw..][..hw];
        let hi = &x[(img * g.c + 2 * p + 1) * hw..][..hw];
        plane[..wp + 1].fill(0);
        for y in 0..g.h {
            // Row y from position (y + 1)·wp + 1. The packing fills whole panels, writing zeros past the row
            // into the padding and the rows below, which are packed (or zeroed) after it.
            let start = (y + 1) * wp + 1;
            let (lo, hi) = (&lo[y * g.w..][..g.w], &hi[y * g.w..][..g.w]);
            bf16::pack_pair_panels(lo, Some(hi), &mut plane[start..start + packed_w], bf16::NR);
            plane[start - 1] = 0;
            plane[start + g.w] = 0;
        }
        plane[(g.h + 1) * wp..].fill(0);
    });
}

/// A band's blocks: output channels `ob·32 ..` × positions `q0 .. q0 + 32·blocks` of one image (`image`: its
/// pair planes) into `out` (32 rows of 32·blocks f32, `ldc` apart).
#[allow(clippy::too_many_arguments)]
fn run_band(
    runnable: RunnableKernel,
    weights: &DirectWeights,
    ob: usize,
    image: &[u32],
    plan: &Plan,
    q0: usize,
    blocks: usize,
    out: &mut [f32],
    ldc: usize,
) {
    let (pairs, kp) = (weights.c / 2, TAPS * weights.c / 2);
    let offsets: [usize; TAPS] = std::array::from_fn(|t| t / 3 * plan.wp + t % 3);
    let values = weights.values();
    assert!(
        weights.o >= (ob + 1) * BLOCK && values.len() >= (ob + 1) * BLOCK * kp,
        "direct conv: channel block {ob} out of range"
    );
    let end = q0 + offsets[TAPS - 1] + blocks * BLOCK;
    assert!(
        blocks > 0 && image.len() >= (pairs - 1) * plan.plane + end && end <= plan.plane,
        "direct conv: positions {q0}.. read past the input planes"
    );
    assert!(
        ldc >= blocks * BLOCK && out.len() >= (BLOCK - 1) * ldc + blocks * BLOCK,
        "direct conv: the band is not 32 × {ldc}"
    );
    let b: [*const u32; TAPS] = std::array::from_fn(|t| image[q0 + offsets[t]..].as_ptr());
    match runnable.kernel() {
        Bf16Kernel::Avx512Bf16 => {
            for i in 0..blocks {
                let b_block = b.map(|p| p.wrapping_add(i * BLOCK));
                for s in 0..BLOCK / MR {
                    let panel = &values[(ob * BLOCK + s * MR) * kp..][..MR * kp];
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU runs AVX512-BF16 (a RunnableKernel); the panel holds 9·pairs × MR u32; each
                    // tap's reads (pairs planes of 32 positions from b[t] + 32·i) were checked inside `image`
                    // above, and the MR rows of 32 f32 from row s·MR, column 32·i inside `out`.
                    unsafe {
                        let out = out[s * MR * ldc + i * BLOCK..].as_mut_ptr();
                        avx512::block(panel.as_ptr(), &b_block, pairs, plan.plane, out, ldc)
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    unreachable!("AVX512-BF16 is not runnable here");
                }
            }
        }
        kernel @ (Bf16Kernel::Amx | Bf16Kernel::AmxEmulated) => {
            let mut call = ConvCall::new();
            call.b = b;
            call.steps = pairs / amx::STEP;
            call.ldb = 4 * plan.plane;
            call.out = out.as_mut_ptr();
            call.ldc_bytes = 4 * ldc;
            call.a = values[ob * BLOCK * kp..].as_ptr();
            call.lda_bytes = 4 * kp;
            call.blocks = blocks;
            let tile = kernel.conv_tile_fn().expect("an AMX kernel");
            // SAFETY: runnable (Amx: `forward` asserted `runs_on`, the conv self-check); A's 32 rows of kp u32, each
            // tap's pairs planes of 32·blocks positions, out's 32 rows of 32·blocks f32 and blocks ≥ 1 were checked
            // above; steps ≥ 1 as C is a positive multiple of 32.
            unsafe { tile(&call) }
        }
    }
}

/// What the epilogue of every band needs.
pub(super) struct BandStore<'a> {
    pub g: &'a ConvGeom,
    /// The scratch's row stride in positions (W + 2 for the direct convolution: its rows keep the padding).
    pub wp: usize,
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
    pub pool: bool,
    pub outp: SendPtr,
}

dispatch! {
    /// Bias, ReLU and the pool of a band of output rows `y0 .. y0 + rows` (`scratch`: 32 channels, `ldc` apart,
    /// each its rows `e.wp` apart) into channels `ob·32 ..` of the NCHW output.
    pub(super) fn epilogue(e: &BandStore, scratch: &[f32], ldc: usize, img: usize, y0: usize, rows: usize, ob: usize) => epilogue_body
}

#[inline(always)]
fn epilogue_body(e: &BandStore, scratch: &[f32], ldc: usize, img: usize, y0: usize, rows: usize, ob: usize) {
    let (g, wp) = (e.g, e.wp);
    for j in 0..BLOCK {
        let oc = ob * BLOCK + j;
        let b = e.bias.map_or(0.0, |b| b[oc]);
        let src = &scratch[j * ldc..][..rows * wp];
        if e.pool {
            let (ph, pw) = (g.ho / 2, g.wo / 2);
            for py in y0 / 2..(y0 + rows) / 2 {
                let r0 = &src[(2 * py - y0) * wp..][..2 * pw];
                let r1 = &src[(2 * py + 1 - y0) * wp..][..2 * pw];
                let at = ((img * g.o + oc) * ph + py) * pw;
                // SAFETY: img < n, oc < o, py < ph: row py of plane (img, oc) of the N × O × ph × pw output
                // (length checked by `forward`), possibly not initialised yet, hence MaybeUninit; this band and
                // channel block write it alone.
                let dst = unsafe { e.outp.row(at, pw) };
                for (px, v) in dst.iter_mut().enumerate() {
                    let m = r0[2 * px].max(r0[2 * px + 1]).max(r1[2 * px]).max(r1[2 * px + 1]) + b;
                    v.write(if e.relu { m.max(0.0) } else { m });
                }
            }
        } else {
            for y in y0..y0 + rows {
                let at = ((img * g.o + oc) * g.ho + y) * g.wo;
                // SAFETY: img < n, oc < o, y < ho: row y of plane (img, oc) of the N × O × ho × wo output (length
                // checked by `forward`); this band and channel block write it alone.
                let dst = unsafe { e.outp.row(at, g.wo) };
                super::geom::store_act(dst, &src[(y - y0) * wp..][..g.wo], b, e.relu);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, STEP, TAPS};

    /// MR output channels × 32 positions of a block: for each tap and channel pair, the pair's 32 positions (two
    /// registers, straight from the plane) times each channel's weight pair (broadcast from the A panel).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512-BF16; `panel` must hold 9·pairs × MR u32; for each tap t,
    /// `b[t] + p·plane` must hold 32 u32 for every p < pairs; `out` MR rows of 32 f32, `ldc` apart.
    // SAFETY (callers): see "# Safety"; the only caller is `super::block`, which checks the sizes.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn block(
        panel: *const u32,
        b: &[*const u32; TAPS],
        pairs: usize,
        plane: usize,
        out: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // k in super::k_order: steps of STEP channel pairs, each through the 9 taps.
        let mut ap = panel;
        for step in 0..pairs / STEP {
            for &bt in b {
                for p in step * STEP..(step + 1) * STEP {
                    // SAFETY: p < pairs and the panel holds 9·pairs k-pairs: the loads stay inside the planes and the
                    // panel (the contract).
                    unsafe {
                        let bp = bt.add(p * plane);
                        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const _));
                        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const _));
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                            acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                            acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
                        }
                        ap = ap.add(MR);
                    }
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: row r < MR of `out` holds 32 f32 (the contract).
            unsafe {
                _mm512_storeu_ps(out.add(r * ldc), acc_r[0]);
                _mm512_storeu_ps(out.add(r * ldc + 16), acc_r[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_round_positions_up_to_blocks_as_few_times_as_possible() {
        // 9 × 9 with the pool: 8 rows of 11 positions in one band, 3 calls.
        assert_eq!(best_band(8, 11, 2), 8);
        // 150 wide: a band of 2 rows (304 positions, 10 calls of 32) wastes 16 of 320.
        let calls = |rows: usize, wp: usize, band: usize| {
            rows / band * (band * wp).div_ceil(BLOCK) + (rows % band * wp).div_ceil(BLOCK)
        };
        for (rows, wp, step) in [
            (150, 152, 2),
            (75, 77, 1),
            (36, 39, 2),
            (18, 20, 2),
            (9, 11, 1),
            (1, 3, 1),
        ] {
            let band = best_band(rows, wp, step);
            let fits = |b: usize| b * wp <= MAX_BAND_POSITIONS.max(step * wp);
            assert!(band.is_multiple_of(step) && fits(band));
            let best = (1..=rows / step)
                .map(|i| i * step)
                .filter(|&b| fits(b))
                .map(|b| calls(rows, wp, b))
                .min()
                .unwrap_or(0);
            assert_eq!(calls(rows, wp, band), best, "rows {rows}, wp {wp}");
        }
    }
}
