//! What the Winograd kernels share — F(2×2, 3×3), F(3×3, 3×3), F(4×4, 3×3), the AVX-512 input transform and
//! weight gradient: which geometries they take, the runs of tiles a chunk covers, and the last steps of every
//! weight gradient (buffer checks, kernels from the sums of products, the bias gradient).

use rayon::prelude::*;

use super::geom::ConvGeom;

/// True when this path can compute the geometry.
pub fn applicable(g: &ConvGeom) -> bool {
    g.k == 3 && g.pad <= 2 && g.ho >= 1 && g.wo >= 1
}

/// A run of tiles along one tile row: image `img`, tile row `ty`, tile columns `tx0 .. tx0 + len`, stored from
/// position `t` of the chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) img: usize,
    pub(super) ty: usize,
    pub(super) tx0: usize,
    pub(super) len: usize,
    pub(super) t: usize,
}

/// The runs of tiles `t0 .. t0 + nt` (tiles numbered image by image, row by row; `th` × `tw` tiles per image).
pub(super) fn runs(t0: usize, nt: usize, th: usize, tw: usize) -> Vec<Run> {
    let mut out = Vec::new();
    let (mut t, mut tile) = (0, t0);
    while t < nt {
        let img = tile / (th * tw);
        let r = tile % (th * tw);
        let (ty, tx0) = (r / tw, r % tw);
        let len = (tw - tx0).min(nt - t);
        out.push(Run { img, ty, tx0, len, t });
        t += len;
        tile += len;
    }
    out
}

/// The buffer checks of every Winograd weight gradient (the unsafe writes behind it rely on them): `x` the
/// N × C × H × W input, `dy` the N × O × Ho × Wo output gradient, `dw` O × C × 3 × 3, `db` O.
pub(super) fn check_weight_grad(x: &[f32], g: &ConvGeom, dy: &[f32], dw: &[f32], db: &[f32]) {
    let (c, o) = (g.c, g.o);
    assert_eq!(x.len(), g.n * c * g.h * g.w, "Winograd: input does not fit {g:?}");
    assert_eq!(
        dy.len(),
        g.n * o * g.p(),
        "Winograd: output gradient does not fit {g:?}"
    );
    assert_eq!(dw.len(), o * c * 9, "Winograd: weight gradient does not fit {g:?}");
    assert_eq!(db.len(), o, "Winograd: bias gradient does not fit {g:?}");
}

/// `dw = Gᵀ M G` per (o, c), M being the 16 sums of products (16 blocks of O × C) added over `parts` (the
/// threads' partial sums, added in this order). G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
pub(super) fn weights_from_sums(parts: &[&[f32]], o: usize, c: usize, dw: &mut [f32]) {
    kernels_from_sums::<16>(parts, o, c, dw, |sums| {
        let m: [[f32; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|c| sums[i * 4 + c]));
        // t = Gᵀ M (3×4): rows m0 + ½(m1 + m2), ½(m1 − m2), ½(m1 + m2) + m3.
        let mut t = [[0f32; 4]; 3];
        for c in 0..4 {
            t[0][c] = m[0][c] + 0.5 * (m[1][c] + m[2][c]);
            t[1][c] = 0.5 * (m[1][c] - m[2][c]);
            t[2][c] = 0.5 * (m[1][c] + m[2][c]) + m[3][c];
        }
        let mut kernel = [0f32; 9];
        for (i, r) in t.iter().enumerate() {
            kernel[i * 3] = r[0] + 0.5 * (r[1] + r[2]);
            kernel[i * 3 + 1] = 0.5 * (r[1] - r[2]);
            kernel[i * 3 + 2] = 0.5 * (r[1] + r[2]) + r[3];
        }
        kernel
    });
}

/// `dw[o][c] = to_kernel(S)` for every kernel, S its `B` sums of products (B blocks of O × C) added over `parts`
/// (the threads' partial sums, added in this order): the final step of every Winograd weight gradient.
pub(super) fn kernels_from_sums<const B: usize>(
    parts: &[&[f32]],
    o: usize,
    c: usize,
    dw: &mut [f32],
    to_kernel: impl Fn([f32; B]) -> [f32; 9] + Sync,
) {
    let oc_len = o * c;
    assert!(
        dw.len() == 9 * oc_len && parts.iter().all(|p| p.len() >= B * oc_len),
        "Winograd: sums or weight gradient do not fit {o} × {c}"
    );
    // Blocks of kernels, so that the sums are read as contiguous runs (one kernel at a time read 16 values
    // 16·O·C apart per group: a seventh of the weight gradient's time). The groups are added in the same order.
    const BLOCK: usize = 64;
    dw.par_chunks_mut(9 * BLOCK).enumerate().for_each(|(blk, out)| {
        let (idx0, count) = (blk * BLOCK, out.len() / 9);
        let mut sums = [[0f32; BLOCK]; B];
        for (k, row) in sums.iter_mut().enumerate() {
            for part in parts {
                for (s, v) in row.iter_mut().zip(&part[k * oc_len + idx0..][..count]) {
                    *s += v;
                }
            }
        }
        for (j, kernel) in out.chunks_exact_mut(9).enumerate() {
            kernel.copy_from_slice(&to_kernel(std::array::from_fn(|k| sums[k][j])));
        }
    });
}

/// `db[o] = Σ dy[n, o, ·]`, summed in f64.
pub(super) fn bias_grad(dy: &[f32], g: &ConvGeom, db: &mut [f32]) {
    let (o, p) = (g.o, g.p());
    assert!(
        db.len() == o && dy.len() == g.n * o * p,
        "Winograd: bias gradient does not fit {g:?}"
    );
    db.par_iter_mut().enumerate().for_each(|(oc, d)| {
        let mut s = 0f64;
        for img in 0..g.n {
            s += dy[(img * o + oc) * p..(img * o + oc + 1) * p]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
        *d = s as f32;
    });
}
