#!/usr/bin/env python3
"""PyTorch reference figures for catdog's benchmarks, measured on the same machine in the same conditions.

Not part of the test suite (it needs torch). Usage:
    python3 scripts/bench_torch.py [forward|train|mlp|all] [--threads 2] [--batch 32] [--size 150]
                                   [--variants fp32,fp32-cl,bf16-cl] [--device cpu|cuda]

forward: VGG16 conv base forward (random weights), images/s.
train:   block5 fine-tuning step (blocks 1-4 under no_grad, block5 + head with gradients, RMSprop), images/s,
         the same step from a cached block4_pool tensor, and the feature-extraction step from cached block5_pool
         (the head alone: Flatten 8192 -> 256 -> 1).
Variants (forward and train): fp32 (NCHW), fp32-cl (channels_last), bf16-cl (torch.autocast("cpu",
dtype=torch.bfloat16) + channels_last: what a PyTorch user who knows their tools writes; oneDNN runs it on AMX
or AVX512-BF16 where the CPU has them), and for GPUs (`--device cuda`, e.g. `--variants
fp32,tf32,fp32-cl,bf16-cl,fp16-cl`): tf32 (fp32 with TF32 matmuls and convolutions allowed), fp16-cl
(torch.autocast("cuda", dtype=torch.float16) + channels_last, the training steps through torch.amp.GradScaler:
torch.cuda.amp's recipe, which `catdog --precision fp16` follows). Timings on a GPU synchronize before the clock
stops.
mlp:     a 64-32-1 MLP with dropout 0.2 and L2, batch 32, 20 epochs on 10,000 x 11 (the labs' speed reference).
"""
import argparse
import contextlib
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


DEVICE = "cpu"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def best_of(n, f):
    f()
    sync()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def variant(name, model, x):
    """The model and input laid out for the variant on DEVICE, and the context its steps run in."""
    model, x = model.to(DEVICE), x.to(DEVICE)
    if name.endswith("-cl"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if DEVICE == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        torch.backends.cudnn.allow_tf32 = name == "tf32"
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name.split("-")[0])
    ctx = (lambda: torch.autocast(DEVICE, dtype=half)) if half else contextlib.nullcontext
    return model, x, ctx


def forward(a):
    for name in a.variants:
        m, x, ctx = variant(name, vgg_features().eval(), torch.randn(a.batch, 3, a.size, a.size))

        def run():
            with torch.no_grad(), ctx():
                m(x)

        s = best_of(a.iters, run)
        print(f"torch {torch.__version__} VGG16 forward [{name}] on {where()}, batch {a.batch}, {a.size}x{a.size}: {a.batch / s:.2f} images/s ({s:.3f} s/batch)")


def train(a):
    for name in a.variants:
        train_variant(a, name)


def train_variant(a, name):
    feats, x = vgg_features(), torch.randn(a.batch, 3, a.size, a.size)
    feats, x, ctx = variant(name, feats, x)
    prefix, block5 = feats[:24], feats[24:]
    for p in prefix.parameters():
        p.requires_grad = False
    with torch.no_grad():
        n_out = block5(prefix(torch.zeros(1, 3, a.size, a.size, device=DEVICE))).numel()
    head = nn.Sequential(nn.Flatten(), nn.Linear(n_out, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1))
    head = head.to(DEVICE)
    params = list(block5.parameters()) + list(head.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-5)
    head_opt = torch.optim.RMSprop(head.parameters(), lr=1e-5)
    y = (torch.arange(a.batch) % 2).float().unsqueeze(1).to(DEVICE)
    # fp16 scales the loss as torch.cuda.amp does; the other variants' scaler does nothing.
    scaler = torch.amp.GradScaler(DEVICE, enabled=name.startswith("fp16"))

    def update(loss, o):
        o.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(o)
        scaler.update()

    def step(h=None):
        with ctx():
            if h is None:
                with torch.no_grad():
                    h = prefix(x)
            loss = F.binary_cross_entropy_with_logits(head(block5(h)).float(), y)
        update(loss, opt)

    def head_step(f):
        with ctx():
            loss = F.binary_cross_entropy_with_logits(head(f).float(), y)
        update(loss, head_opt)

    s = best_of(a.iters, step)
    with torch.no_grad():
        cached = prefix(x)
        features = block5(cached)
    c = best_of(a.iters, lambda: step(cached))
    e = best_of(10 * a.iters, lambda: head_step(features))
    print(f"torch {torch.__version__} [{name}] on {where()}, batch {a.batch}, {a.size}x{a.size}: "
          f"block5 fine-tuning step from images {a.batch / s:.1f} images/s ({s:.3f} s/step); "
          f"from cached block4_pool {a.batch / c:.1f} images/s ({c:.3f} s/step); "
          f"feature-extraction step from cached block5_pool (head alone) {a.batch / e:.0f} images/s")


def where():
    if DEVICE == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU, {torch.get_num_threads()} threads"


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
    p.add_argument("--variants", default="fp32,fp32-cl,bf16-cl",
                   help="comma-separated: fp32 (NCHW), fp32-cl (channels_last), bf16-cl (autocast + channels_last), "
                        "tf32 (GPU), fp16-cl (autocast + channels_last + GradScaler)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    DEVICE = a.device
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    torch.set_num_threads(a.threads)
    for name, f in [("forward", forward), ("train", train), ("mlp", mlp)]:
        if a.what in (name, "all"):
            f(a)
