#!/usr/bin/env python3
"""Regenerates the golden fixtures in tests/fixtures from the reference libraries.

The tests do not need this script: the fixtures are committed. Run it to extend them (add a case, a layer, a
sequence) or to re-derive them with newer library versions, then run `cargo test --release`.

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install keras jax scipy numpy pillow safetensors torch
    /tmp/fx/bin/python scripts/make_fixtures.py [--only augment,early_stopping,vgg_tiny] [--out tests/fixtures]

- augment/: Keras' ImageDataGenerator.apply_transform (Keras 3 legacy preprocessing, numpy backend, which
  imports jax) on the input images img0.png / img1.png found in the output folder (made afresh if absent).
- early_stopping/: Keras 3's EarlyStopping callback driven epoch by epoch with scripted monitored values.
- vgg_tiny/: a VGG16-topology network in PyTorch with narrow widths, random weights from torch.manual_seed(0),
  run on image0.png / image1.png (made afresh if absent).

Each folder's JSON records the library versions. See tests/fixtures/README.md for the formats.
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("KERAS_BACKEND", "numpy")


def save_json(path, obj):
    path.write_text(json.dumps(obj, indent=1) + "\n")


def load_or_make_png(path, make):
    if not path.exists():
        make().save(path)
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def gradient_image(w, h, seed, gray=False):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    if gray:
        img = np.repeat(img.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    return Image.fromarray(img, "RGB")


# --- augment -----------------------------------------------------------------------------------------------

AUGMENT_CASES = [
    dict(shear_deg=0.2),
    dict(shear_deg=5.0),
    dict(shear_deg=-12.0),
    dict(zx=0.8, zy=0.8),
    dict(zx=1.2, zy=1.2),
    dict(zx=0.9, zy=1.1),
    dict(flip_horizontal=True),
    dict(shear_deg=8.0, zx=0.85, zy=1.15, flip_horizontal=True),
    dict(rotation_deg=15.0),
    dict(keras_tx=5.0, keras_ty=-3.0),
    dict(shear_deg=10.0, zx=1.25, zy=1.25, fill_mode="constant"),
    dict(zx=1.3, zy=0.9, fill_mode="reflect"),
]


def make_augment(out):
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    images = {
        "img0": load_or_make_png(out / "img0.png", lambda: gradient_image(64, 64, 0)),
        "img1": load_or_make_png(out / "img1.png", lambda: gradient_image(48, 48, 1, gray=True)),
    }
    tensors = {f"{k}.input": v for k, v in images.items()}
    cases = []
    for name, img in images.items():
        for i, spec in enumerate(AUGMENT_CASES):
            c = dict(shear_deg=0.0, zx=1.0, zy=1.0, rotation_deg=0.0, keras_tx=0.0, keras_ty=0.0,
                     flip_horizontal=False, fill_mode="nearest", cval=0.0)
            c.update(spec)
            gen = ImageDataGenerator(fill_mode=c["fill_mode"], cval=c["cval"])
            params = dict(theta=c["rotation_deg"], tx=c["keras_tx"], ty=c["keras_ty"], shear=c["shear_deg"],
                          zx=c["zx"], zy=c["zy"], flip_horizontal=c["flip_horizontal"])
            key = f"{name}.case{i}"
            tensors[key] = np.ascontiguousarray(gen.apply_transform(img.copy(), params), dtype=np.float32)
            # Keras applies tx along columns and ty along rows (content moves by -tx, -ty).
            cases.append(dict(key=key, image=name, shear_deg=c["shear_deg"], zx=c["zx"], zy=c["zy"],
                              rotation_deg=c["rotation_deg"], keras_tx=c["keras_tx"], keras_ty=c["keras_ty"],
                              shift_rows=-c["keras_ty"] + 0.0, shift_cols=-c["keras_tx"] + 0.0,
                              flip_horizontal=c["flip_horizontal"], fill_mode=c["fill_mode"], cval=c["cval"]))
    save_file(tensors, str(out / "augment.safetensors"))
    save_json(out / "cases.json", dict(keras_version=keras.__version__, cases=cases))


# --- early stopping ----------------------------------------------------------------------------------------

SEQUENCES = {
    "dip_then_rise": ("val_loss", [0.9, 0.7, 0.6, 0.62, 0.61, 0.65, 0.7, 0.72, 0.8, 0.9]),
    "plateau": ("val_loss", [0.5, 0.49, 0.4899, 0.4898, 0.4897, 0.4896, 0.4895, 0.4894]),
    "monotone": ("val_loss", [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]),
    "noisy": ("val_loss", [0.8, 0.6, 0.65, 0.55, 0.58, 0.57, 0.56, 0.59, 0.6, 0.54, 0.61, 0.62]),
    "accuracy": ("val_accuracy", [0.6, 0.7, 0.72, 0.71, 0.73, 0.73, 0.72, 0.7]),
}
CONFIGS = [
    dict(patience=0),
    dict(patience=2),
    dict(patience=3, restore_best_weights=True),
    dict(patience=2, min_delta=0.01),
    dict(patience=5, restore_best_weights=True),
    dict(patience=2, baseline=0.58),
    dict(patience=1, start_from_epoch=3, restore_best_weights=True),
    dict(patience=2, mode="max"),
]


class EpochModel:
    """Stands in for a Keras model: its 'weights' are the number of the epoch that produced them."""

    def __init__(self):
        self.epoch = None
        self.restored = None
        self.stop_training = False

    def get_weights(self):
        return [np.array([self.epoch])]

    def set_weights(self, w):
        self.restored = int(w[0][0])


def run_early_stopping(monitor, values, config):
    import keras

    cb = keras.callbacks.EarlyStopping(monitor=monitor, **config)
    model = EpochModel()
    cb.set_model(model)
    cb.on_train_begin()
    epochs_run = 0
    for epoch, v in enumerate(values):
        model.epoch = epoch
        epochs_run += 1
        cb.on_epoch_end(epoch, {monitor: v})
        if model.stop_training:
            break
    cb.on_train_end()
    stopped = cb.stopped_epoch if cb.stopped_epoch > 0 or model.stop_training else None
    best = getattr(cb, "best_epoch", None)
    return dict(epochs_run=epochs_run, stopped_epoch=stopped, best_epoch=best,
                restored_weights_from_epoch=model.restored)


def make_early_stopping(out):
    import keras

    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for seq, (monitor, values) in SEQUENCES.items():
        for config in CONFIGS:
            config = dict(config)
            if monitor == "val_accuracy":
                config["mode"] = "max"
            result = run_early_stopping(monitor, values, config)
            cases.append(dict(sequence=seq, monitor=monitor, values=values, config=config, **result))
    save_json(out / "cases.json", dict(keras_version=keras.__version__, epochs_are_zero_based=True, cases=cases))


# --- vgg_tiny ----------------------------------------------------------------------------------------------

WIDTHS = [8, 16, 32, 64, 64]
CONVS_PER_BLOCK = [2, 2, 3, 3, 3]


def make_vgg_tiny(out):
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    layers, c_in = [], 3
    for width, n in zip(WIDTHS, CONVS_PER_BLOCK):
        for _ in range(n):
            layers += [torch.nn.Conv2d(c_in, width, 3, padding=1), torch.nn.ReLU()]
            c_in = width
        layers.append(torch.nn.MaxPool2d(2, 2))
    features = torch.nn.Sequential(*layers).eval()
    size = 64
    fc1 = torch.nn.Linear(WIDTHS[-1] * (size // 32) ** 2, 16)
    fc2 = torch.nn.Linear(16, 1)

    imgs = [load_or_make_png(out / f"image{i}.png", lambda i=i: gradient_image(size, size, 10 + i)) for i in range(2)]
    x = torch.tensor(np.stack(imgs)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((x - mean) / std).contiguous()

    outputs = {"input": x}
    with torch.no_grad():
        h, block = x, 1
        for layer in features:
            h = layer(h)
            if isinstance(layer, torch.nn.MaxPool2d):
                outputs[f"block{block}_pool"] = h.contiguous()
                block += 1
        outputs["head_logits"] = fc2(torch.relu(fc1(h.flatten(1)))).contiguous()
    weights = {f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}
    head = {f"head.fc1.{k}": v.contiguous() for k, v in fc1.state_dict().items()}
    head.update({f"head.fc2.{k}": v.contiguous() for k, v in fc2.state_dict().items()})
    save_file(weights, str(out / "weights.safetensors"))
    save_file({**weights, **head}, str(out / "weights_with_head.safetensors"))
    save_file(outputs, str(out / "outputs.safetensors"))
    save_json(out / "meta.json", dict(torch_version=torch.__version__, widths=WIDTHS, size=size, seed=0,
                                      n_images=2, preprocessing="RGB, x/255, ImageNet mean/std",
                                      head="Flatten(NCHW order) -> fc1 -> ReLU -> fc2 (logit)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--only", default="augment,early_stopping,vgg_tiny")
    args = ap.parse_args()
    makers = {"augment": make_augment, "early_stopping": make_early_stopping, "vgg_tiny": make_vgg_tiny}
    for name in args.only.split(","):
        makers[name](Path(args.out) / name)
        print(f"wrote {Path(args.out) / name}")


if __name__ == "__main__":
    main()
