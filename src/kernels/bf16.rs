//! bf16 matrix products for `--precision bf16`, as PyTorch's CPU autocast means it: inputs rounded to bf16
//! (round to nearest even), products accumulated in f32, results in f32.
//!
//! The kernel is AVX512-BF16's `vdpbf16ps` (stable Rust: `_mm512_dpbf16_ps`), which multiplies pairs of bf16
//! values and adds both products to an f32 lane, so operands are packed as pairs along the inner dimension: A
//! (m × k) into panels of [`MR`] rows, each k-pair of a row one u32; B (k × n) into panels of [`NR`] columns, each
//! k-pair of a column one u32. It runs only where CPUID reports AVX512-BF16 (AMD Zen 4/5, Intel Cooper Lake,
//! Sapphire Rapids and later); elsewhere [`kernel`] is `None` and the caller keeps f32. Where the CPU has AMX
//! (Sapphire Rapids and later) and its self-check passes, the same products run on the tiles ([`super::amx`]).

use std::sync::OnceLock;

use rayon::prelude::*;

use super::amx::{self, Amx, TileFn};
pub use super::bf16_format::{from_bf16, to_bf16, MR, NR};

/// The bf16 kernel this CPU can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// AVX512-BF16 `vdpbf16ps`.
    Avx512Bf16,
    /// AMX `tdpbf16ps` on the tile registers (chosen only after its self-check, see [`super::amx`]).
    Amx,
    /// The AMX path with the tile instructions modelled in Rust ([`amx::emulated_tile`]): never chosen by
    /// [`kernel`]; tests run it to check the AMX layouts on machines without AMX.
    AmxEmulated,
}

impl Bf16Kernel {
    /// Its name, for logs, benchmarks and config.json.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Avx512Bf16 => "avx512-bf16",
            Bf16Kernel::Amx => "amx-bf16",
            Bf16Kernel::AmxEmulated => "amx-emulated",
        }
    }

    /// Whether this CPU (and, for AMX, Linux and the self-check) can run it. A `Bf16Kernel` is a plain value that
    /// any caller can name, so the safe entry points ask this before they run one.
    pub fn is_runnable(self) -> bool {
        match self {
            Bf16Kernel::Avx512Bf16 => avx512_bf16().is_some(),
            Bf16Kernel::Amx => *amx::status() == Amx::Ready,
            Bf16Kernel::AmxEmulated => true,
        }
    }

    /// Panics (rather than letting the CPU fault on an unknown instruction) when [`Self::is_runnable`] is false.
    fn assert_runnable(self) {
        assert!(
            self.is_runnable(),
            "the bf16 kernel {} cannot run on this CPU; take one from bf16::kernel() or bf16::available()",
            self.name()
        );
    }

    /// This kernel as a [`RunnableKernel`]; panics as [`Self::assert_runnable`] when this CPU cannot run it.
    pub fn checked(self) -> RunnableKernel {
        self.assert_runnable();
        RunnableKernel(self)
    }

    /// The direct-convolution block function of the AMX kernels.
    pub(super) fn conv_tile_fn(self) -> Option<amx::ConvTileFn> {
        match self {
            Bf16Kernel::Avx512Bf16 => None,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Amx => Some(amx::conv_tile),
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Amx => Some(amx::emulated_conv_tile),
            Bf16Kernel::AmxEmulated => Some(amx::emulated_conv_tile),
        }
    }

    /// The tile function of the AMX kernels.
    fn tile_fn(self) -> Option<TileFn> {
        match self {
            Bf16Kernel::Avx512Bf16 => None,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Amx => Some(amx::tile),
            #[cfg(not(target_arch = "x86_64"))]
            Bf16Kernel::Amx => Some(amx::emulated_tile),
            Bf16Kernel::AmxEmulated => Some(amx::emulated_tile),
        }
    }
}

/// A [`Bf16Kernel`] this CPU was found to run ([`Bf16Kernel::checked`]), for the entry point called once per tile
/// ([`gemm_block`]), so that the check is made once per product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnableKernel(Bf16Kernel);

impl RunnableKernel {
    /// The kernel.
    pub fn kernel(self) -> Bf16Kernel {
        self.0
    }
}

/// The bf16 kernel this CPU runs best, if any: AMX where it passed its self-check, else AVX512-BF16.
/// `CATDOG_BF16=off` hides both (to see the fp32 fallback and its notice on a CPU that has one);
/// `CATDOG_BF16=avx512` skips AMX (to compare the two).
pub fn kernel() -> Option<Bf16Kernel> {
    use super::overrides::{Bf16Switch, KernelOverrides};
    let asked = KernelOverrides::current().bf16;
    if asked == Some(Bf16Switch::Off) {
        return None;
    }
    if asked != Some(Bf16Switch::Avx512) && *amx::status() == Amx::Ready {
        return Some(Bf16Kernel::Amx);
    }
    avx512_bf16()
}

/// Every bf16 kernel this CPU can run (the tests run each), and what they skip and why.
pub fn available() -> (Vec<Bf16Kernel>, Vec<String>) {
    let mut have: Vec<Bf16Kernel> = avx512_bf16().into_iter().collect();
    let mut skipped = Vec::new();
    match amx::status() {
        Amx::Ready => have.push(Bf16Kernel::Amx),
        Amx::Absent => skipped.push("AMX (this CPU has none)".to_string()),
        Amx::Refused(why) => skipped.push(format!("AMX ({why})")),
    }
    if have.is_empty() {
        skipped.push("AVX512-BF16 (this CPU has none)".to_string());
    }
    (have, skipped)
}

/// Whether this CPU has AVX-512 F/BW and AVX512-BF16 (whatever kernel [`kernel`] chose).
pub(super) fn has_avx512_bf16() -> bool {
    avx512_bf16().is_some()
}

fn avx512_bf16() -> Option<Bf16Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            return Some(Bf16Kernel::Avx512Bf16);
        }
    }
    None
}

/// `x` rounded to the nearest bf16, as f32.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// Two values as one k-pair: the first in the low half (the lane order `vdpbf16ps` multiplies).
#[inline(always)]
pub(super) fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// A (m × k) in bf16 k-pairs, panels of [`MR`] rows (zero-padded rows and a zero k when k is odd).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedA {
    pub m: usize,
    pub k: usize,
    data: Vec<u32>,
    /// The same values in AMX's row layout, made on the first AMX use ([`amx::rows_layout`]).
    amx_rows: OnceLock<Vec<u32>>,
}

impl PackedA {
    /// Packs the row-major `a` (m × k, row stride k).
    ///
    /// Panics when `a` is not m × k.
    pub fn pack(a: &[f32], m: usize, k: usize) -> PackedA {
        assert_eq!(a.len(), m * k, "bf16 pack: A is not {m}×{k}");
        let kp = k.div_ceil(2);
        let panels = m.div_ceil(MR);
        let mut data = vec![0u32; panels * kp * MR];
        let pack_panel =
            |(panel, chunk): (usize, &mut [u32])| pack_rows(a, k, panel * MR, MR.min(m - panel * MR), MR, chunk);
        for_each_panel(&mut data, kp * MR, pack_panel);
        PackedA::from_parts(m, k, data)
    }

    fn from_parts(m: usize, k: usize, data: Vec<u32>) -> PackedA {
        PackedA {
            m,
            k,
            data,
            amx_rows: OnceLock::new(),
        }
    }

    /// The packed values, given back (to reuse the buffer).
    pub fn into_data(self) -> Vec<u32> {
        self.data
    }

    /// AMX's row layout of these values and its row stride in pairs.
    fn amx_rows(&self) -> (&[u32], usize) {
        let kp = self.k.div_ceil(2);
        let rows = self.amx_rows.get_or_init(|| amx::rows_layout(&self.data, self.m, kp));
        (rows, kp.div_ceil(amx::STEP) * amx::STEP)
    }
}

crate::kernels::simd::dispatch! {
    /// Rows `first .. first + count` of the row-major `src` (rows of k values) as k-pairs into `out`: the pair p
    /// of row `first + r` at `p · stride + r` (stride MR for A panels, NR for transposed B panels).
    fn pack_rows(src: &[f32], k: usize, first: usize, count: usize, stride: usize, out: &mut [u32]) => pack_rows_body
}

#[inline(always)]
fn pack_rows_body(src: &[f32], k: usize, first: usize, count: usize, stride: usize, out: &mut [u32]) {
    // Each row is rounded as a whole (a contiguous loop the compiler vectorises); its bf16 values, read two at a
    // time, are the pairs, since the first of a pair is the low half.
    let mut halves = vec![0u16; 2 * k.div_ceil(2)];
    for r in 0..count {
        let row = &src[(first + r) * k..][..k];
        for (h, x) in halves.iter_mut().zip(row) {
            *h = to_bf16(*x);
        }
        for (p, two) in halves.chunks_exact(2).enumerate() {
            out[p * stride + r] = u32::from(two[0]) | (u32::from(two[1]) << 16);
        }
    }
}

impl PackedA {
    /// A from data already in the packed layout: panels of [`MR`] rows, each k-pair of a row one u32 (the first
    /// value in the low half), zero-padded.
    ///
    /// Panics when `data` does not have the packed length for m × k.
    pub fn from_packed(m: usize, k: usize, data: Vec<u32>) -> PackedA {
        assert_eq!(
            data.len(),
            m.div_ceil(MR) * k.div_ceil(2) * MR,
            "bf16: packed A is not {m}×{k}"
        );
        PackedA::from_parts(m, k, data)
    }
}

/// Packs B (k × n, row stride `ld`) into `out`: panels of [`NR`] columns, each k-pair of a column one u32
/// (zero-padded columns and a zero k when k is odd). Returns the number of u32 written.
///
/// Panics when `b` is shorter than k rows of stride `ld` or `ld < n`.
pub fn pack_b(b: &[f32], k: usize, n: usize, ld: usize, out: &mut Vec<u32>) -> usize {
    assert!(
        ld >= n && (k == 0 || b.len() >= (k - 1) * ld + n),
        "bf16 pack: B is not {k}×{n} with stride {ld}"
    );
    let (kp, len) = grow_for_b(out, k, n);
    let pack_panel = |(panel, chunk): (usize, &mut [u32])| {
        let (j0, cols) = (panel * NR, NR.min(n - panel * NR));
        for p in 0..kp {
            let lo = &b[2 * p * ld + j0..][..cols];
            let hi = (2 * p + 1 < k).then(|| &b[(2 * p + 1) * ld + j0..][..cols]);
            pack_pair_panels(lo, hi, &mut chunk[p * NR..][..NR], NR);
        }
    };
    for_each_panel(&mut out[..len], kp * NR, pack_panel);
    len
}

/// `f(panel, its chunk)` for the chunks of `packed`: in parallel, unless already inside a task of rayon's pool
/// (a chunk of a parallel convolution), where the threads are busy and waiting would only let rayon run another
/// task on this thread.
fn for_each_panel(packed: &mut [u32], panel_len: usize, f: impl Fn((usize, &mut [u32])) + Sync + Send) {
    if rayon::current_thread_index().is_some() {
        packed.chunks_mut(panel_len).enumerate().for_each(f);
    } else {
        packed.par_chunks_mut(panel_len).enumerate().for_each(f);
    }
}

/// Two rows of B (`lo`, and `hi` or zeros) as one k-pair row of every panel: the values of panel j (columns
/// j·NR ..) go to `out[j · panel_stride ..][..NR]`, zero-padded past the last column. The bf16 Winograd forward
/// packs its transformed input this way, a pair of channels at a time, and [`pack_b`] each panel's row pairs.
///
/// Panics when `out` is too short for the panels or `hi` is not as long as `lo`.
pub fn pack_pair_panels(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32], panel_stride: usize) {
    let n = lo.len();
    let panels = n.div_ceil(NR);
    assert!(hi.is_none_or(|h| h.len() == n), "bf16 pack: pair rows differ in length");
    assert!(
        panel_stride >= NR && (panels == 0 || out.len() >= (panels - 1) * panel_stride + NR),
        "bf16 pack: {} values too short for {panels} panels {panel_stride} apart",
        out.len()
    );
    #[cfg(target_arch = "x86_64")]
    if avx512_bf16().is_some() {
        // SAFETY: AVX512-BF16 (and F/BW) were detected just now; the lengths were checked above.
        unsafe { avx512::pack_pair_panels(lo, hi, out, panel_stride) };
        return;
    }
    pack_pair_panels_scalar(lo, hi, out, panel_stride)
}

/// [`pack_pair_panels`] with [`to_bf16`]'s rounding, on any CPU.
fn pack_pair_panels_scalar(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32], panel_stride: usize) {
    let n = lo.len();
    for (panel, t0) in (0..n).step_by(NR).enumerate() {
        let cols = NR.min(n - t0);
        let dst = &mut out[panel * panel_stride..][..NR];
        for j in 0..cols {
            dst[j] = pair(lo[t0 + j], hi.map_or(0.0, |h| h[t0 + j]));
        }
        dst[cols..].fill(0);
    }
}

/// Grows `out` to the packed length of a k × n B and returns (k-pairs, that length).
fn grow_for_b(out: &mut Vec<u32>, k: usize, n: usize) -> (usize, usize) {
    let kp = k.div_ceil(2);
    let len = n.div_ceil(NR) * kp * NR;
    if out.len() < len {
        out.resize(len, 0);
    }
    (kp, len)
}

/// Packs the transpose of `bt` (n × k, row-major) as B (k × n) into `out`, laid out as [`pack_b`] does: each
/// k-pair of a column is two neighbours of a row of `bt`. Returns the number of u32 written.
///
/// Panics when `bt` is not n × k.
pub fn pack_b_transposed(bt: &[f32], k: usize, n: usize, out: &mut Vec<u32>) -> usize {
    assert_eq!(bt.len(), n * k, "bf16 pack: Bᵀ is not {n}×{k}");
    let (kp, len) = grow_for_b(out, k, n);
    let pack_panel = |(panel, chunk): (usize, &mut [u32])| {
        let (j0, cols) = (panel * NR, NR.min(n - panel * NR));
        // Every pair of the panel's columns below n is written; only the columns past n must be zeroed.
        if cols < NR {
            chunk.fill(0);
        }
        #[cfg(target_arch = "x86_64")]
        if cols == NR && k.is_multiple_of(32) && avx512_bf16().is_some() {
            // SAFETY: AVX512-BF16 (and F/BW) were detected just now; rows j0 .. j0 + NR of bt hold k values
            // each (bt is n × k and j0 + NR ≤ n), and the chunk is this panel's kp × NR u32.
            unsafe { avx512::pack_transposed_panel(&bt[j0 * k..(j0 + NR) * k], k, chunk) };
            return;
        }
        pack_rows(bt, k, j0, cols, NR, chunk);
    };
    for_each_panel(&mut out[..len], kp * NR, pack_panel);
    len
}

/// `c (m × n, row stride ldc) = a · b` with `b` packed by [`pack_b`] for the same k and n, on `kernel`.
///
/// Panics when a buffer does not fit the shapes.
pub fn gemm(kernel: Bf16Kernel, a: &PackedA, b: &[u32], n: usize, c: &mut [f32], ldc: usize) {
    gemm_into(kernel, a, b, n, c, ldc, false)
}

/// [`gemm()`] that adds to `c` when `accumulate`.
pub fn gemm_into(kernel: Bf16Kernel, a: &PackedA, b: &[u32], n: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
    check_gemm(kernel, a, b, n, c, ldc);
    match kernel {
        Bf16Kernel::Avx512Bf16 => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: check_gemm asserted that this CPU has AVX512-BF16 (and F/BW); the lengths of a (by
            // construction), b and c were checked there for these m, n, k and ldc.
            unsafe {
                avx512::gemm(a, b, n, c, ldc, accumulate)
            }
        }
        Bf16Kernel::Amx | Bf16Kernel::AmxEmulated => {
            for i0 in (0..a.m).step_by(amx::ROWS) {
                amx_block_rows(kernel, a, i0 / amx::ROWS, b, n, &mut c[i0 * ldc..], ldc, accumulate);
            }
        }
    }
}

/// The rows of C that block `ib` of A ([`amx::ROWS`] rows) makes on an AMX kernel (`c` starts at the block's
/// first row): whole ROWS × NR blocks straight into `c`, the blocks cut by the edges through a buffer.
#[allow(clippy::too_many_arguments)]
fn amx_block_rows(
    kernel: Bf16Kernel,
    a: &PackedA,
    ib: usize,
    b: &[u32],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let kp = a.k.div_ceil(2);
    let rows = amx::ROWS.min(a.m - ib * amx::ROWS);
    for (j, b_panel) in b.chunks(kp * NR).take(n.div_ceil(NR)).enumerate() {
        let cols = NR.min(n - j * NR);
        if (rows, cols) == (amx::ROWS, NR) {
            amx_block(kernel, a, ib, b_panel, &mut c[j * NR..], ldc, accumulate);
            continue;
        }
        let mut t = [0f32; amx::ROWS * NR];
        amx_block(kernel, a, ib, b_panel, &mut t, NR, false);
        for (r, src) in t.chunks_exact(NR).take(rows).enumerate() {
            let dst = &mut c[r * ldc + j * NR..][..cols];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(&src[..cols]);
            }
        }
    }
}

/// One [`amx::ROWS`] × NR block on an AMX kernel: rows of block `ib` of A, the columns of `b_panel` (kp × NR),
/// into (or, when `accumulate`, added to) `out`'s first ROWS rows of NR values, `ldc` apart.
fn amx_block(
    kernel: Bf16Kernel,
    a: &PackedA,
    ib: usize,
    b_panel: &[u32],
    out: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let kp = a.k.div_ceil(2);
    let (rows, lda) = a.amx_rows();
    assert!(b_panel.len() >= kp * NR, "bf16 block: B panel is short");
    assert!(
        rows.len() >= (ib + 1) * amx::ROWS * lda,
        "bf16 block: A block {ib} out of range"
    );
    assert!(
        ldc >= NR && out.len() >= (amx::ROWS - 1) * ldc + NR,
        "bf16 block: C is not {} × {NR} with stride {ldc}",
        amx::ROWS
    );
    let tile = kernel.tile_fn().expect("an AMX kernel");
    // Every caller (gemm_into, gemm_parallel, gemm_tile, gemm_block) has the kernel checked runnable: for
    // Bf16Kernel::Amx, amx::status() was Ready (CPU, OS permission, self-check); the emulated one needs nothing.
    // SAFETY: that, and the A rows of block ib hold ROWS rows of lda ≥ kp pairs, zero past kp (rows_layout), the
    // B panel kp × NR, and out ROWS rows of NR, ldc apart (all checked above).
    unsafe {
        tile(
            kp,
            rows[ib * amx::ROWS * lda..].as_ptr(),
            lda,
            b_panel.as_ptr(),
            out.as_mut_ptr(),
            ldc,
            accumulate,
        )
    }
}

/// [`gemm()`] with the panels of rows spread over rayon's threads (for a product that is not already one task of
/// a parallel loop, such as the head's dense layers).
///
/// Panics when a buffer does not fit the shapes.
pub fn gemm_parallel(kernel: Bf16Kernel, a: &PackedA, b: &[u32], n: usize, c: &mut [f32], ldc: usize) {
    check_gemm(kernel, a, b, n, c, ldc);
    let kp = a.k.div_ceil(2);
    match kernel {
        Bf16Kernel::Avx512Bf16 => {
            a.data
                .par_chunks(kp * MR)
                .zip(c.par_chunks_mut(MR * ldc))
                .enumerate()
                .for_each(|(pi, (a_panel, c_rows))| {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: check_gemm asserted the CPU runs this kernel and saw c hold a.m rows of
                    // stride ldc ≥ n, so the chunk from row pi·MR holds this panel's rows (the last chunk is
                    // (m − 1 − pi·MR)·ldc + n long at least), and b the packed panels for n columns.
                    unsafe {
                        avx512::panel_rows(kp, a_panel, MR.min(a.m - pi * MR), b, n, c_rows, ldc, false)
                    }
                })
        }
        Bf16Kernel::Amx | Bf16Kernel::AmxEmulated => {
            let blocks = a.m.div_ceil(amx::ROWS);
            let groups = column_groups(blocks, n.div_ceil(NR), rayon::current_num_threads());
            if groups == 1 {
                c.par_chunks_mut(amx::ROWS * ldc)
                    .take(blocks)
                    .enumerate()
                    .for_each(|(ib, c_rows)| amx_block_rows(kernel, a, ib, b, n, c_rows, ldc, false));
            } else {
                c.chunks_mut(amx::ROWS * ldc)
                    .take(blocks)
                    .enumerate()
                    .for_each(|(ib, c_rows)| amx_block_columns(kernel, a, ib, b, n, groups, c_rows, ldc));
            }
        }
    }
}

/// Into how many groups of B panels [`gemm_parallel`] splits each block of rows on AMX: 1 while there are as many
/// blocks as threads; otherwise enough for every thread (at batch 32 the head's `x · wᵀ` is one 32-row block,
/// which one thread alone made slower than fp32).
fn column_groups(blocks: usize, panels: usize, threads: usize) -> usize {
    if blocks >= threads {
        1
    } else {
        threads.div_ceil(blocks.max(1)).min(panels).max(1)
    }
}

/// The rows of C that block `ib` of A makes (`c_rows` from its first row), its B panels cut into `groups` that run
/// in parallel, each into a buffer of its own columns that is then copied into `c_rows`.
#[allow(clippy::too_many_arguments)]
fn amx_block_columns(
    kernel: Bf16Kernel,
    a: &PackedA,
    ib: usize,
    b: &[u32],
    n: usize,
    groups: usize,
    c_rows: &mut [f32],
    ldc: usize,
) {
    let (kp, panels) = (a.k.div_ceil(2), n.div_ceil(NR));
    let rows = amx::ROWS.min(a.m - ib * amx::ROWS);
    let per = panels.div_ceil(groups);
    let parts: Vec<(usize, Vec<f32>)> = (0..panels)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|p0| {
            let cols = (n - p0 * NR).min(per * NR);
            let mut part = vec![0f32; amx::ROWS * cols];
            amx_block_rows(kernel, a, ib, &b[p0 * kp * NR..], cols, &mut part, cols, false);
            (p0 * NR, part)
        })
        .collect();
    for (j0, part) in parts {
        let cols = part.len() / amx::ROWS;
        for (r, src) in part.chunks_exact(cols).take(rows).enumerate() {
            c_rows[r * ldc + j0..][..cols].copy_from_slice(src);
        }
    }
}

/// The checks every gemm entry makes before its unsafe kernel relies on them.
fn check_gemm(kernel: Bf16Kernel, a: &PackedA, b: &[u32], n: usize, c: &[f32], ldc: usize) {
    kernel.assert_runnable();
    let (m, kp) = (a.m, a.k.div_ceil(2));
    assert!(
        b.len() >= n.div_ceil(NR) * kp * NR,
        "bf16 gemm: packed B is short for {}×{n}",
        a.k
    );
    assert!(
        ldc >= n && (m == 0 || c.len() >= (m - 1) * ldc + n),
        "bf16 gemm: C is not {m}×{n} with stride {ldc}"
    );
}

/// One [`MR`] × [`NR`] tile of `a · b`: rows from panel `i` of `a`, columns from panel `j` of `b` (packed by
/// [`pack_b`] for n columns), into `out` (row stride NR; rows and columns past the edge are left as they were).
///
/// Panics when the panels are out of range or this CPU does not run `kernel`.
pub fn gemm_tile(kernel: Bf16Kernel, a: &PackedA, i: usize, b: &[u32], j: usize, n: usize, out: &mut [f32; MR * NR]) {
    tile_on(kernel.checked(), a, i, b, j, n, out)
}

/// [`gemm_tile`] on a kernel already checked.
#[inline(always)]
fn tile_on(kernel: RunnableKernel, a: &PackedA, i: usize, b: &[u32], j: usize, n: usize, out: &mut [f32; MR * NR]) {
    let kernel = kernel.0;
    let kp = a.k.div_ceil(2);
    assert!(
        i < a.m.div_ceil(MR) && j < n.div_ceil(NR),
        "bf16 tile: panel ({i}, {j}) out of range"
    );
    assert!(b.len() >= n.div_ceil(NR) * kp * NR, "bf16 tile: packed B is short");
    let (rows, cols) = (MR.min(a.m - i * MR), NR.min(n - j * NR));
    match kernel {
        Bf16Kernel::Avx512Bf16 => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU runs this kernel (a RunnableKernel); panel i of a and panel j of b hold kp × MR and
            // kp × NR values (checked above), and the rows × cols tile fits `out` (MR × NR, stride NR).
            unsafe {
                avx512::panel_tile(kp, &a.data[i * kp * MR..], &b[j * kp * NR..], out, rows, cols)
            }
        }
        Bf16Kernel::Amx | Bf16Kernel::AmxEmulated => {
            // The whole 32-row block holding panel i, of which this tile keeps MR rows: 4× the work, so AMX
            // callers use gemm_block.
            let mut t = [0f32; amx::ROWS * NR];
            let (ib, first) = (i * MR / amx::ROWS, i * MR % amx::ROWS);
            amx_block(kernel, a, ib, &b[j * kp * NR..][..kp * NR], &mut t, NR, false);
            for (src, dst) in t[first * NR..]
                .chunks_exact(NR)
                .zip(out.chunks_exact_mut(NR))
                .take(rows)
            {
                dst[..cols].copy_from_slice(&src[..cols]);
            }
        }
    }
}

/// The rows a [`gemm_block`] call makes: [`amx::ROWS`] on the AMX kernels (two 16-row tiles), [`MR`] otherwise.
pub fn block_rows(kernel: Bf16Kernel) -> usize {
    match kernel {
        Bf16Kernel::Avx512Bf16 => MR,
        Bf16Kernel::Amx | Bf16Kernel::AmxEmulated => amx::ROWS,
    }
}

/// Rows `ib · R ..` (R = [`block_rows`], cut at m) × columns of panel `j` of `a · b` (b packed by [`pack_b`] for
/// n columns) into `out` (row stride NR; rows and columns past the edge are left as they were). The unit of work
/// each kernel does best: one MR × NR tile on AVX512-BF16, a 32 × NR block on AMX.
///
/// It takes a [`RunnableKernel`], checked once by the caller: the narrow layers' tiles are a few hundred cycles
/// each, so a check per tile shows in the whole forward.
///
/// Panics when the block or panel is out of range or `out` holds fewer than R × NR values.
#[inline]
pub fn gemm_block(runnable: RunnableKernel, a: &PackedA, ib: usize, b: &[u32], j: usize, n: usize, out: &mut [f32]) {
    let kernel = runnable.0;
    let r = block_rows(kernel);
    assert!(
        out.len() >= r * NR,
        "bf16 block: out holds {} values, not {r} × {NR}",
        out.len()
    );
    match kernel {
        Bf16Kernel::Avx512Bf16 => {
            let tile: &mut [f32; MR * NR] = (&mut out[..MR * NR]).try_into().expect("MR × NR values");
            tile_on(runnable, a, ib, b, j, n, tile)
        }
        Bf16Kernel::Amx | Bf16Kernel::AmxEmulated => {
            let kp = a.k.div_ceil(2);
            assert!(
                ib < a.m.div_ceil(r) && j < n.div_ceil(NR) && b.len() >= n.div_ceil(NR) * kp * NR,
                "bf16 block: block ({ib}, {j}) out of range"
            );
            let b_panel = &b[j * kp * NR..][..kp * NR];
            let (rows, cols) = (r.min(a.m - ib * r), NR.min(n - j * NR));
            if (rows, cols) == (r, NR) {
                return amx_block(kernel, a, ib, b_panel, out, NR, false);
            }
            let mut t = [0f32; amx::ROWS * NR];
            amx_block(kernel, a, ib, b_panel, &mut t, NR, false);
            for (src, dst) in t.chunks_exact(NR).zip(out.chunks_exact_mut(NR)).take(rows) {
                dst[..cols].copy_from_slice(&src[..cols]);
            }
        }
    }
}

/// The scalar reference: `c = bf16(a) · bf16(b)` accumulated in f32, one product at a time (a, b, c row-major).
pub fn reference_gemm(a: &[f32], b: &[f32], c: &mut [f32], (m, k, n): (usize, usize, usize)) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f32;
            for t in 0..k {
                s += round(a[i * k + t]) * round(b[t * n + j]);
            }
            c[i * n + j] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PackedA, MR, NR};

    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512-BF16; `b` must hold the packed panels for `a.k` × `n`, and `c`
    /// must hold `a.m` rows of stride `ldc ≥ n` (the safe [`super::gemm`] checks both).
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::gemm_into`, which checks both.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn gemm(a: &PackedA, b: &[u32], n: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
        let kp = a.k.div_ceil(2);
        for (pi, a_panel) in a.data.chunks(kp * MR).enumerate() {
            let i0 = pi * MR;
            // SAFETY: the caller's contract: c holds a.m rows of stride ldc, so the panel's rows from i0 fit.
            unsafe { panel_rows(kp, a_panel, MR.min(a.m - i0), b, n, &mut c[i0 * ldc..], ldc, accumulate) }
        }
    }

    /// The rows of C that one A panel makes: `rows` rows of `n` columns, from every B panel.
    ///
    /// # Safety
    /// As [`gemm`]: `a_panel` holds kp × MR u32, `b` the panels of n columns, and `c` `rows` rows of stride ldc.
    #[allow(clippy::too_many_arguments)]
    // SAFETY (callers): see "# Safety"; `gemm` and `super::gemm_parallel` pass panels and rows of checked buffers.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn panel_rows(
        kp: usize,
        a_panel: &[u32],
        rows: usize,
        b: &[u32],
        n: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        for (pj, b_panel) in b.chunks(kp * NR).take(n.div_ceil(NR)).enumerate() {
            let j0 = pj * NR;
            // SAFETY: the panels hold kp k-pairs of MR rows and NR columns; the tile written is rows × min(NR,
            // n − j0) from column j0, inside c by the caller's contract.
            unsafe {
                tile(
                    kp,
                    a_panel.as_ptr(),
                    b_panel.as_ptr(),
                    c.as_mut_ptr().add(j0),
                    ldc,
                    rows,
                    NR.min(n - j0),
                    accumulate,
                )
            }
        }
    }

    /// [`super::pack_pair_panels`] with the CPU's own rounding, `vcvtne2ps2bf16` (to nearest even; like
    /// `vdpbf16ps`, it reads f32 denormals as zero), and a permutation that interleaves the two rows into pairs.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512-BF16; the lengths as [`super::pack_pair_panels`] checks them.
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::pack_pair_panels`, which checks both.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack_pair_panels(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32], panel_stride: usize) {
        // Lane 2i of the result is lo[i], lane 2i + 1 is hi[i]: cvtne2ps puts lo's 16 values in lanes 0..16
        // and hi's in 16..32.
        let interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        let n = lo.len();
        for (panel, t0) in (0..n).step_by(NR).enumerate() {
            for half in 0..2 {
                let first = t0 + 16 * half;
                let count = n.saturating_sub(first).min(16);
                let mask: __mmask16 = if count == 16 { 0xffff } else { (1u16 << count) - 1 };
                // SAFETY: the masked loads read only lo/hi[first .. first + count], inside both (count ≤ n −
                // first); the store writes 16 u32 of this panel's NR, inside `out` (checked by the caller).
                unsafe {
                    let l = _mm512_maskz_loadu_ps(mask, lo.as_ptr().wrapping_add(first));
                    let h = match hi {
                        Some(h) => _mm512_maskz_loadu_ps(mask, h.as_ptr().wrapping_add(first)),
                        None => _mm512_setzero_ps(),
                    };
                    let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
                    let pairs = _mm512_permutexvar_epi16(interleave, both);
                    _mm512_storeu_si512(out.as_mut_ptr().add(panel * panel_stride + 16 * half) as *mut _, pairs);
                }
            }
        }
    }

    /// One whole panel of B = btᵀ: `rows` holds the panel's NR rows of bt (k values each, k a multiple of 32),
    /// `out` its k/2 × NR pairs. Per 16 rows and 16 pairs: `vcvtne2ps2bf16` rounds a row's 32 values into its 16
    /// pairs (one register), and a 16 × 16 transpose of those registers makes 16 pair rows of 16 columns, each
    /// one store. The scalar packing wrote each pair alone, 128 bytes after the last: a sixth of the bf16 head
    /// step for the head's 256 × 8192 weight.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW and AVX512-BF16; `rows` must hold NR × k values and `out` k/2 × NR.
    // SAFETY (callers): see "# Safety"; the only caller is the safe `super::pack_b_transposed`, which checks both.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn pack_transposed_panel(rows: &[f32], k: usize, out: &mut [u32]) {
        assert!(k.is_multiple_of(32) && rows.len() >= NR * k && out.len() >= k / 2 * NR);
        for p0 in (0..k / 2).step_by(16) {
            for half in 0..2 {
                let mut m = [_mm512_setzero_si512(); 16];
                for (r, m) in m.iter_mut().enumerate() {
                    // SAFETY: row 16·half + r < NR holds k values; 2·p0 + 32 ≤ k.
                    unsafe {
                        let row = rows.as_ptr().add((16 * half + r) * k + 2 * p0);
                        let (a, b) = (_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16)));
                        // The second operand's values fill the low half: pairs p0 .. p0 + 8 from a, then b's.
                        *m = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(b, a));
                    }
                }
                let t = crate::kernels::transpose::avx512::transpose16(m);
                for (p, v) in t.iter().enumerate() {
                    // SAFETY: pair row p0 + p < k/2 of the panel, columns 16·half .. 16·half + 16 < NR.
                    unsafe { _mm512_storeu_si512(out.as_mut_ptr().add((p0 + p) * NR + 16 * half) as *mut _, *v) };
                }
            }
        }
    }

    /// [`tile`] for the safe [`super::gemm_tile`].
    ///
    /// # Safety
    /// As [`tile`]: `a` and `b` start panels of kp pairs, and rows ≤ MR, cols ≤ NR.
    // SAFETY (callers): see "# Safety"; `super::gemm_tile` checks the panels and the tile's size.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn panel_tile(kp: usize, a: &[u32], b: &[u32], out: &mut [f32], rows: usize, cols: usize) {
        // SAFETY: the caller's contract; `out` holds MR rows of stride NR.
        unsafe { tile(kp, a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), NR, rows, cols, false) }
    }

    /// One MR × NR tile of C from an A panel and a B panel.
    ///
    /// # Safety
    /// As [`gemm`]; `a` points at kp × MR u32, `b` at kp × NR u32, and `c` at a tile of `rows` × `cols` with row
    /// stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    // SAFETY (callers): see "# Safety"; `gemm` passes panels and tile origins inside its checked buffers.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile(
        kp: usize,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..kp {
            // SAFETY: p < kp, so both 16-lane loads and the MR broadcasts stay inside the panels.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR) as *const _));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16) as *const _));
                let ap = a.add(p * MR);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                    acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                    acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            for (h, v) in acc_r.iter().enumerate() {
                let first = h * 16;
                if first >= cols {
                    break;
                }
                let mask: __mmask16 = if cols - first >= 16 {
                    0xffff
                } else {
                    (1u16 << (cols - first)) - 1
                };
                // SAFETY: the masked load and store touch only columns first..cols of row r, inside the tile.
                unsafe {
                    let dst = c.add(r * ldc + first);
                    let v = if accumulate {
                        _mm512_add_ps(*v, _mm512_maskz_loadu_ps(mask, dst))
                    } else {
                        *v
                    };
                    _mm512_mask_storeu_ps(dst, mask, v)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpus_pair_packing_equals_the_scalar_one() {
        if avx512_bf16().is_none() {
            eprintln!("skipped: this CPU has no AVX512-BF16 (only the scalar packing runs)");
            return;
        }
        // Ties (1 + 2^-8 rounds to even), signs, a NaN, and lengths that end inside either half of a panel.
        let value = |i: usize| match i % 7 {
            0 => 1.0 + 1.0 / 256.0,
            1 => -2.5e-3 * i as f32,
            2 => 3.0e5 / (i as f32 + 0.37),
            3 if i == 3 => f32::NAN,
            _ => (i as f32 * 0.618).sin(),
        };
        for n in [1, 15, 16, 17, 32, 45, 70] {
            let lo: Vec<f32> = (0..n).map(value).collect();
            let hi: Vec<f32> = (0..n).map(|i| value(i + 3)).collect();
            for hi in [Some(&hi[..]), None] {
                let stride = 3 * NR;
                let (mut fast, mut scalar) = (vec![7u32; 3 * n + NR * 3], vec![7u32; 3 * n + NR * 3]);
                pack_pair_panels(&lo, hi, &mut fast, stride);
                pack_pair_panels_scalar(&lo, hi, &mut scalar, stride);
                assert_eq!(fast, scalar, "n = {n}, hi {}", hi.is_some());
            }
        }
    }

    /// The transposed packing (its AVX-512 panel path where k is a multiple of 32 and a panel is whole) lays out
    /// what packing the transpose does, bit for bit.
    #[test]
    fn packing_bt_equals_packing_its_transpose() {
        let value = |i: usize| ((i as f32) * 0.371).sin() * (1.0 + (i % 13) as f32);
        for (n, k) in [(69, 64), (32, 96), (40, 40), (5, 32)] {
            let bt: Vec<f32> = (0..n * k).map(value).collect();
            let b: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect();
            let (mut want, mut got) = (Vec::new(), Vec::new());
            let len = pack_b(&b, k, n, n, &mut want);
            assert_eq!(pack_b_transposed(&bt, k, n, &mut got), len);
            assert_eq!(got[..len], want[..len], "n = {n}, k = {k}");
        }
    }

    #[test]
    fn amx_products_split_their_columns_only_when_rows_are_too_few_for_the_threads() {
        assert_eq!(column_groups(8, 8, 2), 1, "the head's dyᵀ · x: 8 blocks of rows");
        assert_eq!(column_groups(1, 8, 2), 2, "the head's x · wᵀ at batch 32: one block");
        assert_eq!(column_groups(1, 8, 16), 8, "no more groups than panels");
        assert_eq!(column_groups(3, 5, 16), 5);
        assert_eq!(column_groups(1, 1, 4), 1);
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.5 / 256.0)), 1.0 + 1.0 / 128.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }
}
