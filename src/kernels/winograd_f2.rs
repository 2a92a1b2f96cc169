//! Winograd F(2×2, 3×3) convolution on CPU: 3×3 kernels, stride 1, any padding ≤ 2.
//!
//! Each 2×2 block of outputs (a tile) is computed from a 4×4 input patch with 16 multiplications per (input,
//! output) channel pair instead of 36, so the 16 element-wise products become 16 gemms `[O, C] × [C, tiles]`:
//! 2.25× fewer flops than im2col + gemm on the same gemm kernels. The transforms (`V = Bᵀ d B` for inputs,
//! `U = G g Gᵀ` for weights, `Y = Aᵀ M A` for outputs) are small adds around the gemms; the numerical error of
//! F(2×2, 3×3) stays at f32 rounding level (unlike the larger tiles).
//!
//! Tiles run in chunks (a few hundred tiles, sized to keep the transformed buffers near the cache), in parallel.

use std::cell::RefCell;

use rayon::prelude::*;

use super::bf16::{self, Bf16Kernel, PackedA};
use super::geom::{ConvGeom, Epilogue};
use super::raw::{sgemm, Out, Pool, SendPtr};
use super::simd::dispatch;
pub use super::winograd_shared::applicable;
use super::winograd_shared::{bias_grad, check_weight_grad, runs, weights_from_sums, Run};

/// `U[k][o][c]` = (G g Gᵀ)[k / 4][k % 4] for the 3×3 kernel g = `w[o][c]`.
pub fn transform_weights(weight: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut u = Vec::new();
    transform_weights_into(weight, o, c, &mut u);
    u
}

/// [`transform_weights`] into `u` (its old values do not matter: every value is written).
fn transform_weights_into(weight: &[f32], o: usize, c: usize, u: &mut Vec<f32>) {
    assert_eq!(weight.len(), o * c * 9, "Winograd: weight is not O × C × 3 × 3");
    u.resize(16 * o * c, 0.0);
    let oc = o * c;
    // Parallel over output channels. Each task transforms its channel's C kernels into 16 rows of C values held
    // locally, then writes each row contiguously (writing value by value at stride O·C touched a new cache line
    // per value and made this 4× slower).
    let up = SendPtr::new(u);
    // One row buffer per rayon job, not per output channel: a fresh zeroed 16·C buffer for each of 512 channels
    // was 16 MB of memset per transform, and trainable layers transform on every forward and input gradient.
    (0..o).into_par_iter().for_each_init(
        || vec![0f32; 16 * c],
        |rows, oi| {
            for ci in 0..c {
                let g = &weight[(oi * c + ci) * 9..(oi * c + ci) * 9 + 9];
                // t = G g  (4×3)
                let mut t = [[0f32; 3]; 4];
                for j in 0..3 {
                    let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                    t[0][j] = g0;
                    t[1][j] = 0.5 * (g0 + g1 + g2);
                    t[2][j] = 0.5 * (g0 - g1 + g2);
                    t[3][j] = g2;
                }
                // U = t Gᵀ  (4×4)
                for (i, row) in t.iter().enumerate() {
                    let vals = [
                        row[0],
                        0.5 * (row[0] + row[1] + row[2]),
                        0.5 * (row[0] - row[1] + row[2]),
                        row[2],
                    ];
                    for (j, v) in vals.iter().enumerate() {
                        rows[(i * 4 + j) * c + ci] = *v;
                    }
                }
            }
            for (k, row) in rows.chunks_exact(c).enumerate() {
                // SAFETY: k < 16 and oi < o, so the c values from (k, oi, 0) end at most at 16·o·c = u.len(); row
                // (k, oi) belongs to this task's oi alone, and `u` lives until the loop ends.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), up.get().add(k * oc + oi * c), c) };
            }
        },
    );
}

/// The f32 forward's transformed weights (16 · O · C floats), kept for the next call: trainable layers transform
/// theirs on every forward and input gradient, and a fresh buffer came zeroed by the allocator for nothing.
static TRANSFORMED: Pool<f32> = Pool::new();

thread_local! {
    static V_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static M_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn with_buffers<R>(v_len: usize, m_len: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    V_BUF.with(|v| {
        M_BUF.with(|m| match (v.try_borrow_mut(), m.try_borrow_mut()) {
            (Ok(mut v), Ok(mut m)) => {
                if v.len() < v_len {
                    v.resize(v_len, 0.0);
                }
                if m.len() < m_len {
                    m.resize(m_len, 0.0);
                }
                f(&mut v[..v_len], &mut m[..m_len])
            }
            _ => f(&mut vec![0.0; v_len], &mut vec![0.0; m_len]),
        })
    })
}

/// Tiles per chunk: the larger of the two transformed buffers (16 × channels × tiles floats) near 4 MiB, at least
/// 64 tiles, and enough chunks to keep every thread busy.
fn chunk_tiles(g: &ConvGeom, total: usize, threads: usize) -> usize {
    let by_threads = total.div_ceil(4 * threads.max(1)).max(32);
    cache_tiles(g).min(by_threads).max(1)
}

/// `tiles` cut down to whole panels of [`bf16::NR`] tiles (at least one): the bf16 products compute a chunk's last
/// panel whole, so a chunk of 100 tiles (block5 at batch 32, 2 threads) computed 128: a fifth of the 9×9 layers'
/// products wasted.
fn whole_panels(tiles: usize) -> usize {
    (tiles / bf16::NR * bf16::NR).max(bf16::NR)
}

fn cache_tiles(g: &ConvGeom) -> usize {
    let widest = g.c.max(g.o).max(1);
    (4 * 1024 * 1024 / (16 * 4 * widest)).clamp(64, 4096)
}

/// Chunks for the weight gradient: a multiple of the thread count, of equal size, so that every thread's
/// accumulator gets the same work.
fn weight_grad_chunk_tiles(g: &ConvGeom, total: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    // At least one chunk per thread (an empty batch has no tiles, and 0 here divided by zero below).
    let per_thread = total.div_ceil(threads).div_ceil(cache_tiles(g)).max(1);
    total.div_ceil(threads * per_thread).max(1)
}

/// Forward convolution with Winograd F(2×2, 3×3). Same contract as [`super::conv::conv_forward`]:
/// `weight` is `O × C × 3 × 3`, `out` is `N × O × Ho × Wo`, bias and ReLU fused. With `pool`, a 2×2/2 max-pool
/// (floor mode) is fused too — a tile is exactly one pooling window — and `out` is `N × O × ⌊Ho/2⌋ × ⌊Wo/2⌋`.
///
/// Panics when `g` is not a Winograd geometry or a buffer's length does not fit `g`.
pub fn forward<'o>(x: &[f32], g: &ConvGeom, weight: &[f32], epi: Epilogue, out: impl Into<Out<'o>>) {
    assert!(applicable(g), "Winograd: {g:?} is not a 3×3 geometry with padding ≤ 2");
    let mut u = TRANSFORMED.take(16 * g.o * g.c);
    transform_weights_into(weight, g.o, g.c, &mut u);
    forward_with(x, g, Products::F32(&u), epi, out.into());
    TRANSFORMED.give(u, 1);
}

/// [`forward`] with the 16 products of the Winograd domain in bf16 on `kernel`: the transformed weights and
/// input tiles are rounded to bf16, their products accumulated in f32; the transforms, bias, ReLU and pooling
/// stay f32.
///
/// Panics as [`forward`].
pub fn forward_bf16<'o>(
    kernel: Bf16Kernel,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    epi: Epilogue,
    out: impl Into<Out<'o>>,
) {
    assert!(applicable(g), "Winograd: {g:?} is not a 3×3 geometry with padding ≤ 2");
    let packed = pack_weights_bf16(weight, g.o, g.c);
    forward_with(x, g, Products::Bf16(kernel, &packed), epi, out.into());
    recycle_blocks(packed);
}

/// The input gradient in bf16: `dy` convolved (geometry `gt`, see `conv::conv_input_grad`) with the flipped
/// transpose of the forward's `weight` (O × C × 3 × 3), packed straight from it.
///
/// Panics as [`forward`].
pub fn input_grad_bf16(kernel: Bf16Kernel, dy: &[f32], gt: &ConvGeom, weight: &[f32], dx: &mut [f32]) {
    assert!(
        applicable(gt),
        "Winograd: {gt:?} is not a 3×3 geometry with padding ≤ 2"
    );
    // The transposed convolution's input channels are the forward's outputs, and the other way round.
    let packed = pack_weights_bf16_flipped(weight, gt.c, gt.o);
    forward_with(dy, gt, Products::Bf16(kernel, &packed), Epilogue::NONE, dx.into());
    recycle_blocks(packed);
}

/// The weight gradient's per-thread sums of the 16 products (16 · O · C floats: 16 MB each for 512 × 512),
/// kept between calls (one per thread): allocated afresh, the allocator zeroed them (a twentieth of block5's bf16
/// weight gradient in perf), though the first chunk overwrites every value.
static ACCUMULATORS: Pool<f32> = Pool::new();

/// Buffers for the 16 packed weight blocks, kept between calls (two packings' worth): trainable layers pack their
/// weights on every forward and input gradient, and 16 fresh zeroed buffers (8 MB for 512 × 512) cost more than
/// the packing itself.
static BLOCKS: Pool<u32> = Pool::new();

/// Gives the buffers of packed weights that are no longer needed back to [`BLOCKS`].
fn recycle_blocks(packed: Vec<PackedA>) {
    for block in packed {
        BLOCKS.give(block.into_data(), 32);
    }
}

/// The weights of [`forward_bf16`], transformed and packed: 16 blocks of O × C (for reuse across calls).
///
/// One pass over the weights: 16 input channels of one output channel at a time, transformed lane by lane (so the
/// compiler vectorises across channels) and rounded straight into the packed pairs. Trainable layers repack on
/// every forward and input gradient, so this matters (`catdog bench kernels` times it).
pub fn pack_weights_bf16(weight: &[f32], o: usize, c: usize) -> Vec<PackedA> {
    assert_eq!(weight.len(), o * c * 9, "Winograd: weight is not O × C × 3 × 3");
    pack_blocks(weight, o, c, false)
}

/// The packed weights of the input gradient's convolution (C × O, each kernel turned 180°: see
/// `conv::conv_input_grad`) straight from the forward's `weight` (O × C × 3 × 3), without writing the flipped
/// copy first (that copy was a tenth of block5's input gradient in bf16).
pub fn pack_weights_bf16_flipped(weight: &[f32], o: usize, c: usize) -> Vec<PackedA> {
    assert_eq!(weight.len(), o * c * 9, "Winograd: weight is not O × C × 3 × 3");
    pack_blocks(weight, c, o, true)
}

/// The 16 packed blocks of the `o` × `c` transformed weights; `flipped`: of the flipped transpose of `weight`
/// (which is then c × o × 3 × 3).
fn pack_blocks(weight: &[f32], o: usize, c: usize, flipped: bool) -> Vec<PackedA> {
    let (mr, kp) = (bf16::MR, c.div_ceil(2));
    let panel_len = kp * mr;
    let panels = o.div_ceil(mr);
    // Every value of a full panel is written below; only a last, partial panel has rows that must read as zeros.
    let partial = !o.is_multiple_of(mr);
    let mut blocks: Vec<Vec<u32>> = (0..16)
        .map(|_| {
            let mut block = BLOCKS.take(panels * panel_len);
            if partial {
                block.fill(0);
            }
            block
        })
        .collect();
    {
        // Each panel of output channels writes its own range of every block.
        let mut per_panel: Vec<Vec<&mut [u32]>> = (0..panels).map(|_| Vec::with_capacity(16)).collect();
        for block in blocks.iter_mut() {
            for (panel, chunk) in block.chunks_mut(panel_len).enumerate() {
                per_panel[panel].push(chunk);
            }
        }
        per_panel.into_par_iter().enumerate().for_each(|(panel, mut out)| {
            let rows = (o - panel * mr).min(mr);
            pack_panel(weight, (o, c), flipped, panel, rows, &mut out)
        });
    }
    blocks
        .into_iter()
        .map(|data| PackedA::from_packed(o, c, data))
        .collect()
}

dispatch! {
    /// The 16 packed blocks' part for one panel of output channels (`rows` of them).
    fn pack_panel(
        weight: &[f32],
        shape: (usize, usize),
        flipped: bool,
        panel: usize,
        rows: usize,
        out: &mut [&mut [u32]],
    ) => pack_panel_body
}

#[inline(always)]
fn pack_panel_body(
    weight: &[f32],
    (o, c): (usize, usize),
    flipped: bool,
    panel: usize,
    rows: usize,
    out: &mut [&mut [u32]],
) {
    // (o, c): the packed matrix's rows and columns (for `flipped`, the forward's C and O).
    const L: usize = 16;
    let mr = bf16::MR;
    for c0 in (0..c).step_by(L) {
        let lanes = L.min(c - c0);
        for r in 0..rows {
            let oi = panel * mr + r;
            // g[j][l]: tap j of the kernel of input channel c0 + l.
            let mut g = [[0f32; L]; 9];
            if flipped {
                // Row oi is the forward's input channel, lane l its output channel c0 + l, taps reversed.
                for l in 0..lanes {
                    let src = &weight[((c0 + l) * o + oi) * 9..][..9];
                    for j in 0..9 {
                        g[j][l] = src[8 - j];
                    }
                }
            } else {
                let src = &weight[(oi * c + c0) * 9..][..lanes * 9];
                for l in 0..lanes {
                    for j in 0..9 {
                        g[j][l] = src[l * 9 + j];
                    }
                }
            }
            // t = G g (4 × 3), then U = t Gᵀ (4 × 4), lane by lane.
            let mut t = [[[0f32; L]; 3]; 4];
            for j in 0..3 {
                for l in 0..L {
                    let (g0, g1, g2) = (g[j][l], g[3 + j][l], g[6 + j][l]);
                    t[0][j][l] = g0;
                    t[1][j][l] = 0.5 * (g0 + g1 + g2);
                    t[2][j][l] = 0.5 * (g0 - g1 + g2);
                    t[3][j][l] = g2;
                }
            }
            let mut u = [[0u16; L]; 16];
            for (i, row) in t.iter().enumerate() {
                for l in 0..L {
                    let (a, b, cc) = (row[0][l], row[1][l], row[2][l]);
                    u[i * 4][l] = bf16::to_bf16(a);
                    u[i * 4 + 1][l] = bf16::to_bf16(0.5 * (a + b + cc));
                    u[i * 4 + 2][l] = bf16::to_bf16(0.5 * (a - b + cc));
                    u[i * 4 + 3][l] = bf16::to_bf16(cc);
                }
            }
            // Lanes 2q′ and 2q′ + 1 are the pair q = c0/2 + q′ (zero beyond c: g was zero there).
            for (k, block) in out.iter_mut().enumerate() {
                for q in 0..lanes.div_ceil(2) {
                    let pair = u32::from(u[k][2 * q]) | (u32::from(u[k][2 * q + 1]) << 16);
                    block[(c0 / 2 + q) * mr + r] = pair;
                }
            }
        }
    }
}

/// [`forward_bf16`] with weights packed by [`pack_weights_bf16`].
///
/// Panics as [`forward`], and when `packed` does not fit `g`.
pub fn forward_bf16_packed<'o>(
    kernel: Bf16Kernel,
    x: &[f32],
    g: &ConvGeom,
    packed: &[PackedA],
    epi: Epilogue,
    out: impl Into<Out<'o>>,
) {
    forward_with(x, g, Products::Bf16(kernel, packed), epi, out.into());
}

/// The transformed weights of the 16 products, in the precision the products run in.
#[derive(Clone, Copy)]
enum Products<'a> {
    /// 16 blocks of O × C, f32.
    F32(&'a [f32]),
    /// 16 packed bf16 blocks of O × C.
    Bf16(Bf16Kernel, &'a [PackedA]),
}

thread_local! {
    static B_PACK: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Forward with weights already transformed. Panics when `g` is not a Winograd geometry or a buffer's length does
/// not fit `g`: the unsafe writes below rely on these checks.
fn forward_with(x: &[f32], g: &ConvGeom, products: Products, epi: Epilogue, mut out: Out) {
    let Epilogue { bias, relu, pool } = epi;
    let (c, o) = (g.c, g.o);
    assert!(applicable(g), "Winograd: {g:?} is not a 3×3 geometry with padding ≤ 2");
    g.check_forward("Winograd", x, bias, out.len(), pool);
    match products {
        Products::F32(u) => assert_eq!(u.len(), 16 * o * c, "Winograd: transformed weights do not fit {g:?}"),
        Products::Bf16(_, packed) => assert!(
            packed.len() == 16 && packed.iter().all(|a| a.m == o && a.k == c),
            "Winograd: packed weights do not fit {g:?}"
        ),
    }
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let tiles_per_img = th * tw;
    let total = g.n * tiles_per_img;
    let threads = rayon::current_num_threads();
    let tc = match products {
        Products::F32(_) => chunk_tiles(g, total, threads),
        Products::Bf16(..) => whole_panels(chunk_tiles(g, total, threads)),
    };
    let nchunks = total.div_ceil(tc);
    // The bf16 products have no inner parallelism: always split by chunks.
    let par_chunks = nchunks >= 2 * threads || threads == 1 || matches!(products, Products::Bf16(..));
    let par = if par_chunks {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let outp = out.ptr();
    let run = |chunk: usize| {
        let t0 = chunk * tc;
        let nt = tc.min(total - t0);
        // bf16 needs neither the f32 transformed input (it is packed straight away) nor the products' buffer
        // (each panel's products go through the output transform at once): scratch for a few channel pairs.
        let (v_len, m_len) = match products {
            Products::F32(_) => (16 * c * nt, 16 * o * nt),
            Products::Bf16(..) => (32 * PAIRS_AT_ONCE * nt, 0),
        };
        with_buffers(v_len, m_len, |v, m| {
            if let Products::F32(_) = products {
                // The AVX-512 transform where the CPU has it (faster on every f32 layer it runs).
                if super::winograd_input::available_f32() {
                    super::winograd_input::transform_f32(x, g, (t0, nt), v);
                } else {
                    input_transform(x, g, t0, nt, th, tw, v);
                }
            }
            match products {
                Products::F32(u) => block_products(u, v, (o, c, nt), par, m),
                Products::Bf16(kernel, packed) => B_PACK.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    let block = packed_block_len(c, nt);
                    if buf.len() < 16 * block {
                        buf.resize(16 * block, 0);
                    }
                    // The AVX-512 transform where the CPU has it; the portable one elsewhere (the amx-emulated
                    // tests on other CPUs).
                    if super::winograd_input::available() {
                        super::winograd_input::pack(x, g, (t0, nt), block, &mut buf);
                    } else {
                        input_transform_packed(x, g, t0, nt, th, tw, v, &mut buf);
                    }
                    let panels = Panels {
                        kernel,
                        u: packed,
                        v: &buf,
                        block,
                    };
                    if bf16::block_rows(kernel) == bf16::MR {
                        products_and_output::<16>(&panels, g, t0, nt, th, tw, epi, outp)
                    } else {
                        const AMX_PANELS: usize = 16 * crate::kernels::amx::ROWS / bf16::MR;
                        products_and_output::<AMX_PANELS>(&panels, g, t0, nt, th, tw, epi, outp)
                    }
                }),
            }
            if let Products::F32(_) = products {
                output_transform(m, g, t0, nt, th, tw, bias, relu, pool, outp);
            }
        });
    };
    if par_chunks {
        (0..nchunks).into_par_iter().for_each(run);
    } else {
        (0..nchunks).for_each(run);
    }
}

/// The element-wise products of the Winograd domain as one gemm per block: `m[k]` (O × nt) = `u[k]` (O × C) ·
/// `v[k]` (C × nt) for every block k, all row-major; the block count is `m.len() / (O · nt)` (16 for F(2×2),
/// 36 for F(4×4)).
///
/// Panics when the buffers do not hold the same number of whole blocks.
pub(super) fn block_products(
    u: &[f32],
    v: &[f32],
    (o, c, nt): (usize, usize, usize),
    par: gemm::Parallelism,
    m: &mut [f32],
) {
    let blocks = m.len() / (o * nt).max(1);
    assert!(
        m.len() == blocks * o * nt && u.len() == blocks * o * c && v.len() >= blocks * c * nt,
        "Winograd: {blocks} product blocks do not fit O = {o}, C = {c}, {nt} tiles"
    );
    for k in 0..blocks {
        // SAFETY: block k of m (o × nt), u (o × c) and v (c × nt) lies inside its buffer (asserted above), and m
        // is borrowed mutably, so no one else writes it.
        unsafe {
            sgemm(
                o,
                nt,
                c,
                m.as_mut_ptr().add(k * o * nt),
                nt as isize,
                false,
                u.as_ptr().add(k * o * c),
                1,
                c as isize,
                v.as_ptr().add(k * c * nt),
                1,
                nt as isize,
                par,
            );
        }
    }
}

/// The packed operands of the 16 bf16 products of one chunk.
struct Panels<'a> {
    kernel: Bf16Kernel,
    u: &'a [PackedA],
    v: &'a [u32],
    block: usize,
}

/// The 16 products of a chunk, panel by panel, each followed at once by the output transform of its 8 channels ×
/// 32 tiles (bias, ReLU, pool as [`output_transform`]): the 16 product tiles stay in L1 instead of going through
/// a 16·O·nt buffer and back (faster on every layer; fusing only the narrow ones gained less).
///
/// The products sit in `PANELS` MR × NR panels on the stack: product k's block is panels
/// k·(PANELS/16) .. (k+1)·(PANELS/16), each panel MR of its rows. 16 panels (16 KB, which stay in L1) on
/// AVX512-BF16; on AMX each product is a block of 32 rows, four panels (64 KB in all).
#[allow(clippy::too_many_arguments)]
fn products_and_output<const PANELS: usize>(
    p: &Panels,
    g: &ConvGeom,
    t0: usize,
    nt: usize,
    th: usize,
    tw: usize,
    epi: Epilogue,
    outp: SendPtr,
) {
    let (mr, nr) = (bf16::MR, bf16::NR);
    let kernel = p.kernel.checked();
    let rows_per_block = bf16::block_rows(p.kernel);
    let per_block = PANELS / 16;
    debug_assert_eq!(per_block * mr, rows_per_block);
    let mut tiles = [[0f32; bf16::MR * bf16::NR]; PANELS];
    for j in 0..nt.div_ceil(nr) {
        let cols = nr.min(nt - j * nr);
        // Where each tile of the panel sits: (image, tile row, tile column).
        let at: Vec<(usize, usize, usize)> = (0..cols)
            .map(|q| {
                let tile = t0 + j * nr + q;
                let r = tile % (th * tw);
                (tile / (th * tw), r / tw, r % tw)
            })
            .collect();
        for ib in 0..g.o.div_ceil(rows_per_block) {
            for (k, block) in tiles.chunks_exact_mut(per_block).enumerate() {
                let v = &p.v[k * p.block..][..p.block];
                bf16::gemm_block(kernel, &p.u[k], ib, v, j, nt, block.as_flattened_mut());
            }
            for s in 0..per_block {
                let oc0 = ib * rows_per_block + s * mr;
                if oc0 >= g.o {
                    break;
                }
                let rows = mr.min(g.o - oc0);
                let panels: [&[f32; bf16::MR * bf16::NR]; 16] = std::array::from_fn(|k| &tiles[k * per_block + s]);
                epilogue(panels, g, oc0, rows, &at, epi, outp);
            }
        }
    }
}

dispatch! {
    /// The output transform of one panel: `tiles[k][r·NR + q]` is product k of channel `oc0 + r`, tile `at[q]`.
    fn epilogue(
        tiles: [&[f32; bf16::MR * bf16::NR]; 16],
        g: &ConvGeom,
        oc0: usize,
        rows: usize,
        at: &[(usize, usize, usize)],
        epi: Epilogue,
        outp: SendPtr,
    ) => epilogue_body
}

#[inline(always)]
fn epilogue_body(
    tiles: [&[f32; bf16::MR * bf16::NR]; 16],
    g: &ConvGeom,
    oc0: usize,
    rows: usize,
    at: &[(usize, usize, usize)],
    epi: Epilogue,
    outp: SendPtr,
) {
    let Epilogue { bias, relu, pool } = epi;
    const N: usize = bf16::NR;
    let (o, ho, wo) = (g.o, g.ho, g.wo);
    let (ph, pw) = (ho / 2, wo / 2);
    // The panel's tiles as runs along a tile row (first column, length): each run's outputs are contiguous rows.
    let mut runs = [(0usize, 0usize); N];
    let mut nruns = 0;
    for (q, &(img, ty, _)) in at.iter().enumerate() {
        // Tiles come in order, so a tile of the same image and tile row as the last run extends it.
        let continues = nruns > 0 && {
            let (first_img, first_ty, _) = at[runs[nruns - 1].0];
            (first_img, first_ty) == (img, ty)
        };
        if continues {
            runs[nruns - 1].1 += 1;
        } else {
            runs[nruns] = (q, 1);
            nruns += 1;
        }
    }
    for r in 0..rows {
        let oc = oc0 + r;
        let b = bias.map_or(0.0, |b| b[oc]);
        let m: [&[f32; N]; 16] =
            std::array::from_fn(|k| (&tiles[k][r * N..(r + 1) * N]).try_into().expect("NR values"));
        let e = tile_outputs(m, b, relu);
        if pool {
            let pooled: [f32; N] = std::array::from_fn(|q| e[0][q].max(e[1][q]).max(e[2][q]).max(e[3][q]));
            for &(q0, len) in &runs[..nruns] {
                let (img, ty, tx0) = at[q0];
                let n = len.min(pw.saturating_sub(tx0));
                if ty >= ph || n == 0 {
                    continue;
                }
                // SAFETY: ty < ph and tx0 + n ≤ pw, img < n, oc < o: inside the N × O × ph × pw output (length
                // checked by forward_with); these tiles belong to this chunk alone and channel oc to this panel.
                unsafe {
                    let dst = outp.get().add(((img * o + oc) * ph + ty) * pw + tx0);
                    std::ptr::copy_nonoverlapping(pooled[q0..].as_ptr(), dst, n);
                }
            }
            continue;
        }
        // Output rows 2ty and 2ty + 1 of every tile, interleaved: tile q's columns at 2q and 2q + 1.
        let interleave = |a: &[f32; N], b: &[f32; N]| -> [f32; 2 * N] {
            std::array::from_fn(|i| if i % 2 == 0 { a[i / 2] } else { b[i / 2] })
        };
        let pairs = [interleave(&e[0], &e[1]), interleave(&e[2], &e[3])];
        for &(q0, len) in &runs[..nruns] {
            let (img, ty, tx0) = at[q0];
            let x0 = 2 * tx0;
            let n = (2 * len).min(wo - x0);
            for (dy, row) in pairs.iter().enumerate() {
                let y = 2 * ty + dy;
                if y >= ho {
                    break;
                }
                // SAFETY: y < ho and x0 + n ≤ wo, img < n, oc < o: inside the N × O × ho × wo output (length
                // checked by forward_with); these pixels belong to this run's tiles and this panel's channel alone.
                unsafe {
                    let dst = outp.get().add(((img * o + oc) * ho + y) * wo + x0);
                    std::ptr::copy_nonoverlapping(row[2 * q0..].as_ptr(), dst, n);
                }
            }
        }
    }
}

dispatch! {
    /// `v[k][ci][t]` = (Bᵀ d B)[k] for the 4×4 input patch d of tile `t0 + t`, channel `ci`.
    pub(super) fn input_transform(x: &[f32], g: &ConvGeom, t0: usize, nt: usize, th: usize, tw: usize, v: &mut [f32])
        => input_transform_all
}

#[inline(always)]
fn input_transform_all(x: &[f32], g: &ConvGeom, t0: usize, nt: usize, th: usize, tw: usize, v: &mut [f32]) {
    let runs = runs(t0, nt, th, tw);
    let mut rows = row_scratch(g, &runs);
    input_transform_body(x, g, &runs, nt, 0, g.c, &mut rows, v)
}

dispatch! {
    /// The input transform straight into the packed bf16 operand of the 16 products: block k holds
    /// `(Bᵀ d B)[k]` as [`pack_b`] lays out a C × nt matrix (channel pairs, panels of tiles). `scratch` holds
    /// 16 × 2·[`PAIRS_AT_ONCE`] × nt values (that many channel pairs at a time), `packed` 16 blocks of
    /// `packed_block_len(c, nt)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input_transform_packed(
        x: &[f32],
        g: &ConvGeom,
        t0: usize,
        nt: usize,
        th: usize,
        tw: usize,
        scratch: &mut [f32],
        packed: &mut [u32],
    ) => input_transform_packed_body
}

/// Channel pairs the bf16 input transform does before packing them, so that each panel receives that many
/// neighbouring pair rows at once instead of one 128-byte row per pass over all panels (1 to 16 differed little;
/// 4 was the steadiest).
const PAIRS_AT_ONCE: usize = 4;

/// Length of one packed block of the bf16 input transform: C × nt in channel pairs and panels of [`bf16::NR`].
fn packed_block_len(c: usize, nt: usize) -> usize {
    nt.div_ceil(bf16::NR) * c.div_ceil(2) * bf16::NR
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_transform_packed_body(
    x: &[f32],
    g: &ConvGeom,
    t0: usize,
    nt: usize,
    th: usize,
    tw: usize,
    scratch: &mut [f32],
    packed: &mut [u32],
) {
    let runs = runs(t0, nt, th, tw);
    let (kp, nr) = (g.c.div_ceil(2), bf16::NR);
    let block = packed_block_len(g.c, nt);
    assert!(
        scratch.len() >= 32 * PAIRS_AT_ONCE * nt && packed.len() >= 16 * block,
        "Winograd bf16: buffers too short"
    );
    let mut rows = row_scratch(g, &runs);
    for p0 in (0..kp).step_by(PAIRS_AT_ONCE) {
        let channels = (2 * PAIRS_AT_ONCE).min(g.c - 2 * p0);
        input_transform_body(x, g, &runs, nt, 2 * p0, channels, &mut rows, scratch);
        for k in 0..16 {
            for p in p0..kp.min(p0 + PAIRS_AT_ONCE) {
                let c0 = 2 * (p - p0);
                let lo = &scratch[(k * channels + c0) * nt..][..nt];
                let hi = (c0 + 1 < channels).then(|| &scratch[(k * channels + c0 + 1) * nt..][..nt]);
                // Pair p of every panel of block k: panels are kp · NR apart.
                bf16::pack_pair_panels(lo, hi, &mut packed[k * block + p * nr..k * block + block], kp * nr);
            }
        }
    }
}

/// Scratch for [`input_transform_body`] over `runs`: a zero input row, then Bᵀ d of four rows of the longest run.
/// Made once per chunk (it was made per channel pair, and its zeroing showed in profiles at 9×9).
fn row_scratch(g: &ConvGeom, runs: &[Run]) -> Vec<f32> {
    let longest = runs.iter().map(|r| r.len).max().unwrap_or(0);
    vec![0f32; g.w + 4 * (2 * longest + 2)]
}

/// The input transform of channels `first .. first + channels` into `v[k][ci − first][t]`; `rows` is
/// [`row_scratch`]'s for these runs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_transform_body(
    x: &[f32],
    g: &ConvGeom,
    runs: &[Run],
    nt: usize,
    first: usize,
    channels: usize,
    rows: &mut [f32],
    v: &mut [f32],
) {
    let (c, h, w, pad) = (g.c, g.h, g.w, g.pad as isize);
    let stride_k = channels * nt;
    // Bᵀ d of a run's four input rows, zero-padded: columns 2·tx0 − pad … 2·(tx0 + len) − pad + 2. Computed from the
    // input rows in place (a row outside the image reads as zeros): copying the rows first cost a sixth of a
    // 64-channel layer's time.
    let (zeros, b) = rows.split_at_mut(w);
    let zeros = &*zeros;
    for cl in 0..channels {
        let ci = first + cl;
        for run in runs {
            let plane = &x[(run.img * c + ci) * h * w..(run.img * c + ci + 1) * h * w];
            let width = 2 * run.len + 2;
            let xs = 2 * run.tx0 as isize - pad;
            let row = |i: usize| {
                let yy = 2 * run.ty as isize - pad + i as isize;
                if yy < 0 || yy >= h as isize {
                    zeros
                } else {
                    &plane[yy as usize * w..(yy as usize + 1) * w]
                }
            };
            let (lo, hi) = {
                let lo = (-xs).clamp(0, width as isize) as usize;
                (lo, (w as isize - xs).clamp(lo as isize, width as isize) as usize)
            };
            {
                let first_col = ((xs + lo as isize) as usize).min(w);
                let (r0, r1, r2, r3) = (
                    &row(0)[first_col..][..hi - lo],
                    &row(1)[first_col..][..hi - lo],
                    &row(2)[first_col..][..hi - lo],
                    &row(3)[first_col..][..hi - lo],
                );
                let (b0, rest) = b.split_at_mut(width);
                let (b1, rest) = rest.split_at_mut(width);
                let (b2, b3) = rest.split_at_mut(width);
                let b3 = &mut b3[..width];
                for bi in [&mut *b0, &mut *b1, &mut *b2, &mut *b3] {
                    bi[..lo].fill(0.0);
                    bi[hi..].fill(0.0);
                }
                let (b0, b1, b2, b3) = (&mut b0[lo..hi], &mut b1[lo..hi], &mut b2[lo..hi], &mut b3[lo..hi]);
                for j in 0..hi - lo {
                    b0[j] = r0[j] - r2[j];
                    b1[j] = r1[j] + r2[j];
                    b2[j] = r2[j] - r1[j];
                    b3[j] = r1[j] - r3[j];
                }
            }
            // (Bᵀ d) B per tile: columns 2q … 2q + 3 of each combined row.
            for i in 0..4 {
                let bi = &b[i * width..(i + 1) * width];
                let base = cl * nt + run.t;
                let (o0, rest) = v[(i * 4) * stride_k + base..].split_at_mut(stride_k);
                let (o1, rest) = rest.split_at_mut(stride_k);
                let (o2, o3) = rest.split_at_mut(stride_k);
                for q in 0..run.len {
                    let (a0, a1, a2, a3) = (bi[2 * q], bi[2 * q + 1], bi[2 * q + 2], bi[2 * q + 3]);
                    o0[q] = a0 - a2;
                    o1[q] = a1 + a2;
                    o2[q] = a2 - a1;
                    o3[q] = a1 - a3;
                }
            }
        }
    }
}

/// The 2×2 outputs of N tiles at once: `m[k][q]` is product k of tile q; returns act(b + (Aᵀ M A)[r][s]) as
/// `e[2r + s][q]` (s0 = m0 + m1 + m2 and s1 = m1 − m2 − m3, over rows, then over columns). Shared by the f32
/// output transform and the bf16 epilogue; fixed-size arrays so that the adds vectorise.
#[inline(always)]
fn tile_outputs<const N: usize>(m: [&[f32; N]; 16], b: f32, relu: bool) -> [[f32; N]; 4] {
    let mut e = [[0f32; N]; 4];
    for q in 0..N {
        let s00 = m[0][q] + m[4][q] + m[8][q];
        let s01 = m[1][q] + m[5][q] + m[9][q];
        let s02 = m[2][q] + m[6][q] + m[10][q];
        let s03 = m[3][q] + m[7][q] + m[11][q];
        let s10 = m[4][q] - m[8][q] - m[12][q];
        let s11 = m[5][q] - m[9][q] - m[13][q];
        let s12 = m[6][q] - m[10][q] - m[14][q];
        let s13 = m[7][q] - m[11][q] - m[15][q];
        e[0][q] = s00 + s01 + s02 + b;
        e[1][q] = s01 - s02 - s03 + b;
        e[2][q] = s10 + s11 + s12 + b;
        e[3][q] = s11 - s12 - s13 + b;
    }
    if relu {
        for row in e.iter_mut() {
            for v in row.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
    e
}

dispatch! {
    /// `out[img][oc][2ty + r][2tx + s]` = act(b[oc] + (Aᵀ M A)[r][s]), skipping positions past the output's edge.
    #[allow(clippy::too_many_arguments)]
    fn output_transform(
        m: &[f32],
        g: &ConvGeom,
        t0: usize,
        nt: usize,
        th: usize,
        tw: usize,
        bias: Option<&[f32]>,
        relu: bool,
        pool: bool,
        outp: SendPtr,
    ) => output_transform_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_transform_body(
    m: &[f32],
    g: &ConvGeom,
    t0: usize,
    nt: usize,
    th: usize,
    tw: usize,
    bias: Option<&[f32]>,
    relu: bool,
    pool: bool,
    outp: SendPtr,
) {
    let o = g.o;
    let mut pooled = vec![0f32; if pool { tw } else { 0 }];
    let stride_k = o * nt;
    let runs = runs(t0, nt, th, tw);
    let mut y0 = vec![0f32; 2 * tw];
    let mut y1 = vec![0f32; 2 * tw];
    for oc in 0..o {
        let b = bias.map_or(0.0, |b| b[oc]);
        for run in &runs {
            let base = oc * nt + run.t;
            let len = run.len;
            let ms: [&[f32]; 16] = std::array::from_fn(|k| &m[k * stride_k + base..k * stride_k + base + len]);
            // Aᵀ M A per tile (s0 = m0 + m1 + m2, s1 = m1 − m2 − m3 over rows, then over columns), on blocks
            // of 16 tiles held in fixed-size arrays so that the adds vectorise.
            const L: usize = 16;
            let mut q0 = 0;
            while q0 < len {
                let l = L.min(len - q0);
                let mut mv = [[0f32; L]; 16];
                for (k, row) in mv.iter_mut().enumerate() {
                    if l == L {
                        *row = <[f32; L]>::try_from(&ms[k][q0..q0 + L]).expect("L elements");
                    } else {
                        row[..l].copy_from_slice(&ms[k][q0..q0 + l]);
                    }
                }
                let e = tile_outputs(std::array::from_fn(|k| &mv[k]), b, relu);
                if pool {
                    for i in 0..l {
                        pooled[q0 + i] = e[0][i].max(e[1][i]).max(e[2][i]).max(e[3][i]);
                    }
                    q0 += l;
                    continue;
                }
                let (r0, r1) = (&mut y0[2 * q0..2 * (q0 + l)], &mut y1[2 * q0..2 * (q0 + l)]);
                for (i, (a, b)) in r0.chunks_exact_mut(2).zip(r1.chunks_exact_mut(2)).enumerate() {
                    a.copy_from_slice(&[e[0][i], e[1][i]]);
                    b.copy_from_slice(&[e[2][i], e[3][i]]);
                }
                q0 += l;
            }
            store_run(run, oc, g, pool.then_some(&pooled[..]), [&y0, &y1], outp);
        }
    }
}

/// Stores one run's outputs of channel `oc`: the pooled row (`pooled`, with the 2×2/2 pool) or the two output
/// rows `y` of its tile row, clipped to the output's edge. The caller (`output_transform`, for `forward_with`,
/// which checks the output's length) gives each tile row to one task.
#[inline(always)]
fn store_run(run: &Run, oc: usize, g: &ConvGeom, pooled: Option<&[f32]>, y: [&[f32]; 2], outp: SendPtr) {
    let (o, ho, wo) = (g.o, g.ho, g.wo);
    let (ph, pw) = (ho / 2, wo / 2);
    if let Some(pooled) = pooled {
        if run.ty < ph && run.tx0 < pw {
            let n = run.len.min(pw - run.tx0);
            // SAFETY: img < n, oc < o, ty < ph and tx0 + n ≤ pw, so the n values lie in row ty of plane
            // (img, oc) of the N × O × ph × pw output (its length checked by forward_with); tile
            // rows belong to one chunk each, so no other task writes them; `pooled` is a local buffer.
            unsafe {
                let dst = outp.get().add(((run.img * o + oc) * ph + run.ty) * pw + run.tx0);
                std::ptr::copy_nonoverlapping(pooled.as_ptr(), dst, n);
            }
        }
        return;
    }
    let x0 = 2 * run.tx0;
    let ncols = (2 * run.len).min(wo - x0);
    for (r, y) in y.into_iter().enumerate() {
        let yy = 2 * run.ty + r;
        if yy >= ho {
            break;
        }
        // SAFETY: yy < ho and x0 + ncols ≤ wo, so the values lie in row yy of plane (img, oc) of the
        // N × O × ho × wo output (length checked by forward_with); output rows 2·ty and 2·ty + 1
        // belong to this tile row's chunk alone; y is a local buffer of 2·tw ≥ ncols values.
        unsafe {
            let plane = outp.get().add((run.img * o + oc) * ho * wo);
            std::ptr::copy_nonoverlapping(y.as_ptr(), plane.add(yy * wo + x0), ncols);
        }
    }
}

dispatch! {
    /// `ŷ[k][oc][t]` = (A y Aᵀ)[k] for the 2×2 output-gradient tile y of tile `t0 + t` (positions past the
    /// output's edge are zero). A = [[1, 0], [1, 1], [1, −1], [0, −1]].
    fn grad_transform(dy: &[f32], g: &ConvGeom, t0: usize, nt: usize, th: usize, tw: usize, out: &mut [f32])
        => grad_transform_body
}

#[inline(always)]
fn grad_transform_body(dy: &[f32], g: &ConvGeom, t0: usize, nt: usize, th: usize, tw: usize, out: &mut [f32]) {
    let (o, ho, wo) = (g.o, g.ho, g.wo);
    let stride_k = o * nt;
    // De-interleaved output-gradient rows of a run: a = even columns, b = odd columns, of rows 2ty and 2ty + 1.
    let mut buf = vec![0f32; 4 * tw];
    for run in runs(t0, nt, th, tw) {
        let len = run.len;
        for oc in 0..o {
            let plane = &dy[(run.img * o + oc) * ho * wo..(run.img * o + oc + 1) * ho * wo];
            let (a0, rest) = buf.split_at_mut(tw);
            let (b0, rest) = rest.split_at_mut(tw);
            let (a1, b1) = rest.split_at_mut(tw);
            for (r, (a, b)) in [
                (2 * run.ty, (&mut *a0, &mut *b0)),
                (2 * run.ty + 1, (&mut *a1, &mut *b1)),
            ] {
                let row = (r < ho).then(|| &plane[r * wo..(r + 1) * wo]);
                for q in 0..len {
                    let x = 2 * (run.tx0 + q);
                    a[q] = row.and_then(|row| row.get(x)).copied().unwrap_or(0.0);
                    b[q] = row.and_then(|row| row.get(x + 1)).copied().unwrap_or(0.0);
                }
            }
            let (a0, b0, a1, b1) = (&a0[..len], &b0[..len], &a1[..len], &b1[..len]);
            // A y Aᵀ: rows [a0, b0], [a0 + a1, b0 + b1], [a0 − a1, b0 − b1], [−a1, −b1]; each row [a, b] becomes
            // [a, a + b, a − b, −b].
            let base = oc * nt + run.t;
            // One loop per product, written out (a closure taking `&dyn Fn` per value cost an indirect call per
            // element: a fifth of the weight gradient's time).
            macro_rules! put {
                ($k:expr, |$q:ident| $value:expr) => {
                    for ($q, d) in out[$k * stride_k + base..][..len].iter_mut().enumerate() {
                        *d = $value;
                    }
                };
            }
            put!(0, |q| a0[q]);
            put!(1, |q| a0[q] + b0[q]);
            put!(2, |q| a0[q] - b0[q]);
            put!(3, |q| -b0[q]);
            put!(4, |q| a0[q] + a1[q]);
            put!(5, |q| a0[q] + a1[q] + b0[q] + b1[q]);
            put!(6, |q| a0[q] + a1[q] - b0[q] - b1[q]);
            put!(7, |q| -b0[q] - b1[q]);
            put!(8, |q| a0[q] - a1[q]);
            put!(9, |q| a0[q] - a1[q] + b0[q] - b1[q]);
            put!(10, |q| a0[q] - a1[q] - b0[q] + b1[q]);
            put!(11, |q| b1[q] - b0[q]);
            put!(12, |q| -a1[q]);
            put!(13, |q| -a1[q] - b1[q]);
            put!(14, |q| b1[q] - a1[q]);
            put!(15, |q| b1[q]);
        }
    }
}

/// Weight and bias gradients by Winograd F(2×2, 3×3): `dW[o][c] = Gᵀ (Σ_tiles (Bᵀ d B) ⊙ (A dY Aᵀ)) G`, the sum
/// over tiles being 16 gemms `[O, tiles] × [tiles, C]` (2.25× fewer flops than im2col). Same contract as
/// [`super::conv::conv_weight_grad`].
pub fn weight_grad(x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    weight_grad_with(None, x, g, dy, dw, db)
}

/// [`weight_grad`] with the 16 products in bf16 on `kernel` (the transformed output gradients and inputs rounded,
/// their products summed in f32), as autocast runs a weight gradient. Channel counts in multiples of 16 take the
/// channel-vectorised transforms of [`super::winograd_weight_grad`]; others [`weight_grad_bf16_along_tiles`].
pub fn weight_grad_bf16(kernel: Bf16Kernel, x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    if super::winograd_weight_grad::applicable(g) {
        return super::winograd_weight_grad::weight_grad(kernel, x, g, dy, dw, db);
    }
    weight_grad_with(Some(kernel), x, g, dy, dw, db)
}

/// [`weight_grad_bf16`] with the transforms of [`weight_grad`] (one channel along a run of tiles, into f32
/// buffers, packed afterwards) for any channel count; the tests hold the two forms to each other.
pub fn weight_grad_bf16_along_tiles(
    kernel: Bf16Kernel,
    x: &[f32],
    g: &ConvGeom,
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    weight_grad_with(Some(kernel), x, g, dy, dw, db)
}

fn weight_grad_with(kernel: Option<Bf16Kernel>, x: &[f32], g: &ConvGeom, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    assert!(applicable(g), "Winograd: {g:?} is not a 3×3 geometry with padding ≤ 2");
    check_weight_grad(x, g, dy, dw, db);
    let (c, o) = (g.c, g.o);
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let total = g.n * th * tw;
    let threads = rayon::current_num_threads();
    // 4× longer runs of tiles per pass over the 16 accumulators (16·O·C floats, far beyond L2) than the cache-sized
    // chunks: those passes dominated the weight gradient, in bf16 and in f32 alike (docs/performance.md).
    let tc = (4 * weight_grad_chunk_tiles(g, total, threads))
        .min(total.div_ceil(threads.max(1)))
        .max(1);
    let nchunks = total.div_ceil(tc);
    let groups = threads.min(nchunks).max(1);
    let par = if groups == 1 && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let per = nchunks.div_ceil(groups);
    let oc_len = o * c;
    let mut partials: Vec<Vec<f32>> = (0..groups).map(|_| ACCUMULATORS.take(16 * oc_len)).collect();
    partials.par_iter_mut().enumerate().for_each(|(gi, acc)| {
        let (c0, c1) = ((gi * per).min(nchunks), ((gi + 1) * per).min(nchunks));
        if c0 == c1 {
            acc.clear();
            return;
        }
        // No zeroing: the first chunk's 16 products overwrite every value (`n > 0` is false for it).
        for (n, chunk) in (c0..c1).enumerate() {
            let t0 = chunk * tc;
            let nt = tc.min(total - t0);
            with_buffers(16 * c * nt, 16 * o * nt, |v, yh| {
                input_transform(x, g, t0, nt, th, tw, v);
                grad_transform(dy, g, t0, nt, th, tw, yh);
                if let Some(kernel) = kernel {
                    for k in 0..16 {
                        // M_k (o × c) += Ŷ_k (o × nt) · V_kᵀ (nt × c): the tiles are the inner dimension.
                        let a = PackedA::pack(&yh[k * o * nt..][..o * nt], o, nt);
                        // B_PACK is borrowed only around work that never waits on rayon: a task stolen while
                        // waiting could borrow it again and panic.
                        B_PACK.with(|buf| {
                            let mut buf = buf.borrow_mut();
                            let len = bf16::pack_b_transposed(&v[k * c * nt..][..c * nt], nt, c, &mut buf);
                            let m = &mut acc[k * oc_len..][..oc_len];
                            bf16::gemm_into(kernel, &a, &buf[..len], c, m, c, n > 0);
                        });
                    }
                    return;
                }
                grad_products(yh, v, (o, c, nt), n > 0, par, acc);
            });
        }
    });
    let parts: Vec<&[f32]> = partials.iter().filter(|p| !p.is_empty()).map(|p| &p[..]).collect();
    weights_from_sums(&parts, o, c, dw);
    for acc in partials {
        ACCUMULATORS.give(acc, rayon::current_num_threads());
    }
    bias_grad(dy, g, db);
}

/// The weight gradient's products as one gemm per block: `acc[k]` (O × C) [+]= `yh[k]` (O × nt) · `v[k]`ᵀ
/// (nt × C), the tiles the inner dimension, for every block k (`acc.len() / (O · C)` of them: 16 for F(2×2), 25
/// for F(3×3)); `accumulate` false overwrites.
///
/// Panics when the buffers do not hold the same number of whole blocks.
pub(super) fn grad_products(
    yh: &[f32],
    v: &[f32],
    (o, c, nt): (usize, usize, usize),
    accumulate: bool,
    par: gemm::Parallelism,
    acc: &mut [f32],
) {
    let blocks = acc.len() / (o * c).max(1);
    assert!(
        acc.len() == blocks * o * c && yh.len() >= blocks * o * nt && v.len() >= blocks * c * nt,
        "Winograd: {blocks} weight-gradient blocks do not fit O = {o}, C = {c}, {nt} tiles"
    );
    for k in 0..blocks {
        // SAFETY: block k of acc (o × c), yh (o × nt) and v (c × nt) lies inside its buffer (asserted above), and
        // acc is borrowed mutably, so no one else writes it.
        unsafe {
            sgemm(
                o,
                c,
                nt,
                acc.as_mut_ptr().add(k * o * c),
                c as isize,
                accumulate,
                yh.as_ptr().add(k * o * nt),
                1,
                nt as isize,
                v.as_ptr().add(k * c * nt),
                nt as isize,
                1,
                par,
            );
        }
    }
}
