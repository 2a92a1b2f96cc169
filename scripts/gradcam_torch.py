#!/usr/bin/env python3
"""The golden Grad-CAM fixture (tests/fixtures/gradcam/): PyTorch autograd computes the maps of a catdog checkpoint,
the same way as Keras' Grad-CAM example, for `tests/explain.rs` to compare `catdog explain --json` against.

The checkpoint (`checkpoint.safetensors`, a narrow VGG at 64×64 trained one epoch by `catdog finetune`) is read with
`safetensors`; the input (`image.png`, 64×64 RGB, written here from a fixed pattern) goes through the checkpoint's
preprocessing, the conv base (Conv 3×3 pad 1 + ReLU, MaxPool 2×2), the head (Flatten, Dense + ReLU, Dense). A = the
layer's output (conv + ReLU); score = the class's logit (one logit: z for classes[1], −z for classes[0]);
weights = the spatial mean of dScore/dA; CAM = ReLU(Σ weights·A) / max. Writes `expected.json`.

    pip install torch numpy safetensors
    python3 scripts/gradcam_torch.py tests/fixtures/gradcam
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

LAYERS = ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2", "block2_pool",
          "block3_conv1", "block3_conv2", "block3_conv3", "block3_pool", "block4_conv1", "block4_conv2",
          "block4_conv3", "block4_pool", "block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
INDEX = [0, 2, None, 5, 7, None, 10, 12, 14, None, 17, 19, 21, None, 24, 26, 28, None]


def pattern(size):
    y, x = np.mgrid[0:size, 0:size]
    r = (x * 4 + y * 3) % 256
    g = ((x - size / 2) ** 2 + (y - size / 3) ** 2) ** 0.5 * 6 % 256
    b = (x * y) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gradcam(t, meta, pixels, layer, klass):
    pre = meta["preprocess"]
    x = torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None]
    if pre["bgr"]:
        x = x[:, [2, 1, 0]]
    scale = torch.tensor([pre["scale"] / s for s in pre["std"]]).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(pre["mean"], pre["std"])]).view(1, 3, 1, 1)
    h = x * scale + shift
    a = None
    for name, idx in zip(LAYERS, INDEX):
        if idx is None:
            h = torch.nn.functional.max_pool2d(h, 2, 2)
        else:
            h = torch.relu(torch.nn.functional.conv2d(h, t[f"features.{idx}.weight"], t[f"features.{idx}.bias"], padding=1))
        if name == layer:
            a = h.detach().requires_grad_(True)
            h = a
    head = meta["head"]
    f = h.mean(dim=(2, 3)) if head["kind"] == "gap" else h.flatten(1)
    if head["hidden"] > 0:
        f = torch.relu(f @ t["head.fc1.weight"].T + t["head.fc1.bias"])
    z = f @ t["head.fc2.weight"].T + t["head.fc2.bias"]
    if head["n_out"] == 1:
        p1 = torch.sigmoid(z)[0, 0]
        probs = [1 - p1.item(), p1.item()]
    else:
        probs = torch.softmax(z, 1)[0].tolist()
    c = int(np.argmax(probs)) if klass is None else klass
    score = (z[0, 0] if c == 1 else -z[0, 0]) if head["n_out"] == 1 else z[0, c]
    (grad,) = torch.autograd.grad(score, a)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(1))[0]
    top = cam.max()
    cam = cam / top if top > 0 else cam
    return {"layer": layer, "class": meta["classes"][c], "probability": probs[c], "cam": cam.tolist()}


def main(folder):
    folder = Path(folder)
    with safe_open(folder / "checkpoint.safetensors", "pt") as f:
        meta = json.loads(f.metadata()["model"])
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    pixels = pattern(meta["size"])
    write_png(folder / "image.png", pixels)
    cases = []
    for layer in ["block5_conv3", "block4_conv1", "block3_conv3"]:
        for klass in [None, 0, 1]:
            case = gradcam(tensors, meta, pixels, layer, klass)
            case["asked_class"] = None if klass is None else meta["classes"][klass]
            cases.append(case)
    out = {"torch": torch.__version__, "cases": cases}
    (folder / "expected.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {folder / 'expected.json'}: {len(cases)} maps, torch {torch.__version__}")


if __name__ == "__main__":
    main(sys.argv[1])
