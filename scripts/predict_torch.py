#!/usr/bin/env python3
"""Rebuild a catdog checkpoint in PyTorch and print the same probabilities as `catdog predict --json`.

Usage: python3 scripts/predict_torch.py runs/NAME/best.safetensors IMAGE...
Needs torch, safetensors, pillow, numpy (no torchvision).
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

path, images = sys.argv[1], sys.argv[2:]
t = load_file(path)
with safe_open(path, "pt") as f:
    meta = json.loads(f.metadata()["model"])

CONVS, POOLS_AFTER = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28], {2, 7, 14, 21, 28}


def base(x):  # VGG16 conv base: 3x3 convs (padding 1) + ReLU, 2x2 max-pools
    for i in CONVS:
        x = F.relu(F.conv2d(x, t[f"features.{i}.weight"], t[f"features.{i}.bias"], padding=1))
        if i in POOLS_AFTER:
            x = F.max_pool2d(x, 2)
    return x


def head(f):
    f = torch.flatten(f, 1) if meta["head"]["kind"] == "flatten" else f.mean((2, 3))
    if meta["head"]["hidden"] > 0:
        f = F.relu(F.linear(f, t["head.fc1.weight"], t["head.fc1.bias"]))
    return F.linear(f, t["head.fc2.weight"], t["head.fc2.bias"])  # dropout is off at inference


def load(p):
    s, pre = meta["size"], meta["preprocess"]
    resample = Image.NEAREST if meta["interpolation"] == "nearest" else Image.BILINEAR
    x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((s, s), resample), dtype=np.float32))
    x = x.permute(2, 0, 1)
    if pre["bgr"]:
        x = x.flip(0)
    mean, std = torch.tensor(pre["mean"]).view(3, 1, 1), torch.tensor(pre["std"]).view(3, 1, 1)
    return ((x * pre["scale"] - mean) / std).unsqueeze(0)


with torch.no_grad():
    for p in images:
        z = head(base(load(p)))
        probs = torch.cat([1 - torch.sigmoid(z), torch.sigmoid(z)], 1) if z.shape[1] == 1 else z.softmax(1)
        probs = probs[0].tolist()
        label = meta["classes"][int(np.argmax(probs))]
        print(json.dumps({"path": p, "label": label, "probabilities": dict(zip(meta["classes"], probs))}))
