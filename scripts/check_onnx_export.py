#!/usr/bin/env python3
"""Checks `catdog export --format onnx` against `catdog predict`: the images (resized to the checkpoint's size and
saved as PNG, so that both read the same pixels) go through the exported graph in onnxruntime and through
`catdog predict --json`; prints the largest difference of the probabilities and fails above 1e-5.

    pip install onnxruntime numpy pillow
    python3 scripts/check_onnx_export.py MODEL.onnx CHECKPOINT IMAGE_DIR [--catdog PATH] [--limit 64]
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("checkpoint")
    ap.add_argument("images")
    ap.add_argument("--catdog", default="catdog")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--predict-flags", nargs="*", default=[], help="more flags for catdog predict, e.g. --kernels portable")
    a = ap.parse_args()
    session = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    size, classes = int(meta["size"]), json.loads(meta["classes"])
    files = sorted(p for p in Path(a.images).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: a.limit]
    with tempfile.TemporaryDirectory() as tmp:
        pngs = []
        for i, f in enumerate(files):
            out = Path(tmp) / f"{i:04d}.png"
            Image.open(f).convert("RGB").resize((size, size), Image.NEAREST).save(out)
            pngs.append(out)
        printed = subprocess.run(
            [a.catdog, "predict", "--checkpoint", a.checkpoint, "--json", "--quiet", "--precision", "fp32", *a.predict_flags, tmp],
            check=True, capture_output=True, text=True,
        ).stdout
        ours = {
            Path(r["path"]).name: [r["probabilities"][c] for c in classes] for r in map(json.loads, printed.splitlines())
        }
        pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32).transpose(2, 0, 1) for p in pngs])
        (probs,) = session.run(["probabilities"], {"pixels": pixels})
    worst = 0.0
    for p, row in zip(pngs, probs):
        worst = max(worst, float(np.max(np.abs(np.asarray(ours[p.name]) - row))))
    agree = sum(int(np.argmax(ours[p.name]) == np.argmax(row)) for p, row in zip(pngs, probs))
    print(f"{len(pngs)} images, classes {classes}, size {size}: largest |onnxruntime − catdog predict| = {worst:.2e}; "
          f"the same class for {agree}/{len(pngs)}")
    assert worst <= 1e-5, worst


if __name__ == "__main__":
    main()
