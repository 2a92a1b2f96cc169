#!/usr/bin/env python3
"""The loss-scaling fixture (tests/fixtures/loss_scale/expected.json): `torch.amp.GradScaler` driven through a
fixed pattern of clean and overflowing steps, for `src/train/loss_scale.rs` to replay.

One parameter p (1.0), SGD lr 0.1, loss = p · c with c = 1 on a clean step and c = inf on an overflowing one (the
scaled gradient is then inf). Each step: scaler.scale(loss).backward(); scaler.step(opt); scaler.update(). After
the first steps, those around each growth and the last ones, the step's index, the scale, the growth tracker and p
are recorded. Two schedules: PyTorch's defaults over 4,100 steps
(a few overflows, two growths at 2,000 clean steps), and growth_interval 3 with growth 4, backoff 0.25 (every
branch in a few steps, growth until f32 overflows and the scale stays).

    pip install torch
    python3 scripts/loss_scale_torch.py tests/fixtures/loss_scale
"""

import json
import sys
from pathlib import Path

import torch


def run(settings, overflow_at, steps):
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", **settings)
    rows = []
    for k in range(steps):
        opt.zero_grad()
        c = float("inf") if k in overflow_at else 1.0
        loss = (p * c).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if k < 12 or abs(k - 2000) < 12 or abs(k - 4006) < 12 or k >= steps - 5:
            rows.append([k, scaler.get_scale(), scaler._get_growth_tracker(), p.item()])
    return {"settings": settings, "overflow_at": sorted(overflow_at), "steps": steps, "after": rows}


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/loss_scale")
    out.mkdir(parents=True, exist_ok=True)
    defaults = {"init_scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000}
    small = {"init_scale": 2.0 ** 100, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 3}
    cases = [
        run(defaults, {0, 1, 5, 2006}, 4100),
        run(small, {2, 3, 9}, 60),
    ]
    doc = {"torch": torch.__version__, "cases": cases}
    (out / "expected.json").write_text(json.dumps(doc) + "\n")
    print(f"wrote {out / 'expected.json'} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
