#!/usr/bin/env python3
"""PyTorch reference figures for catdog's benchmarks, measured on the same machine in the same conditions.

Not part of the test suite (it needs torch). Usage:
    python3 scripts/bench_torch.py [forward|train|mlp|all] [--threads 2] [--batch 32] [--size 150]

forward: VGG16 conv base forward (random weights), images/s.
train:   block5 fine-tuning step (blocks 1-4 under no_grad, block5 + head with gradients, RMSprop), images/s,
         and the same step from a cached block4_pool tensor.
mlp:     a 64-32-1 MLP with dropout 0.2 and L2, batch 32, 20 epochs on 10,000 x 11 (the labs' speed reference).
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg_features():
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def best_of(n, f):
    f()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def forward(a):
    m = vgg_features().eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    with torch.no_grad():
        s = best_of(a.iters, lambda: m(x))
    print(f"torch {torch.__version__} VGG16 forward, batch {a.batch}, {a.size}x{a.size}, {torch.get_num_threads()} threads: "
          f"{a.batch / s:.2f} images/s ({s:.3f} s/batch)")


def train(a):
    feats = vgg_features()
    prefix, block5 = feats[:24], feats[24:]
    for p in prefix.parameters():
        p.requires_grad = False
    with torch.no_grad():
        n_out = block5(prefix(torch.zeros(1, 3, a.size, a.size))).numel()
    head = nn.Sequential(nn.Flatten(), nn.Linear(n_out, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1))
    params = list(block5.parameters()) + list(head.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-5)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = (torch.arange(a.batch) % 2).float().unsqueeze(1)

    def step(h=None):
        if h is None:
            with torch.no_grad():
                h = prefix(x)
        loss = F.binary_cross_entropy_with_logits(head(block5(h)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    s = best_of(a.iters, step)
    with torch.no_grad():
        cached = prefix(x)
    c = best_of(a.iters, lambda: step(cached))
    print(f"torch {torch.__version__} block5 fine-tuning step, batch {a.batch}, {a.size}x{a.size}, {torch.get_num_threads()} threads: "
          f"from images {a.batch / s:.1f} images/s ({s:.3f} s/step); from cached block4_pool {a.batch / c:.1f} images/s ({c:.3f} s/step)")


def mlp(a):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10000, 11, generator=g)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).float().unsqueeze(1)
    m = nn.Sequential(nn.Linear(11, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    t = time.perf_counter()
    for _ in range(20):
        perm = torch.randperm(10000, generator=g)
        for i in range(0, 10000, 32):
            idx = perm[i:i + 32]
            loss = F.binary_cross_entropy_with_logits(m(x[idx]), y[idx])
            loss = loss + 1e-4 * sum((w ** 2).sum() for n, w in m.named_parameters() if n.endswith("weight"))
            opt.zero_grad()
            loss.backward()
            opt.step()
    s = time.perf_counter() - t
    print(f"torch {torch.__version__} MLP 11-64-32-1, dropout 0.2, L2, batch 32, 20 epochs on 10,000 rows, "
          f"{torch.get_num_threads()} threads: {s:.2f} s")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", nargs="?", default="all", choices=["forward", "train", "mlp", "all"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--iters", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name, f in [("forward", forward), ("train", train), ("mlp", mlp)]:
        if a.what in (name, "all"):
            f(a)
