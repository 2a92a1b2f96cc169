#!/usr/bin/env python3
"""The l2, dropout and scaling labs rebuilt in Keras, to set catdog's tables beside (docs/labs.md).

Same recipe as `catdog lab` with its defaults: a stratified 80/20 split per seed, scalers fitted on the training
part, Dense layers with Glorot-uniform kernels, Adam (lr 1e-3), batch 32, binary cross-entropy or MSE; every
figure is the mean ± sample standard deviation over seeds 0, 1, 2 (each its own split, data draw and weights).
- l2: the shipped breast-cancer data (data/breast_cancer.csv), Dense 64-32 ReLU with `kernel_regularizer=l2(λ)` on
  the hidden layers (catdog's `--regularize hidden`), 100 epochs; train/validation accuracy after training, the
  validation loss with the penalty (as Keras reports it), the share of hidden kernel weights below 1e-3, mean |w|.
- dropout: 100 two-moons points with noise 0.3 and a 30-point noisy sine (x ~ U(-3, 3), y = sin x + N(0, 0.3²)),
  Dense 256-256-256 ReLU with Dropout(p) after each hidden layer, 300 epochs.
- scaling: breast cancer unscaled, standardised, min-max; epochs until the training loss (the epoch's mean, as
  Keras' history has it) is ≤ 0.1.
The data draws use numpy's generator, so the moons and sine points differ from catdog's; the recipe is the same.

Run: KERAS_BACKEND=jax python3 scripts/labs_keras.py [--seeds 3] > keras_labs.md   (Keras 3; jax or tensorflow)
"""
import argparse
import csv
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import numpy as np  # noqa: E402
import keras  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def breast_cancer():
    with open(os.path.join(ROOT, "data", "breast_cancer.csv")) as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    t = header.index("diagnosis")
    classes = sorted({r[t] for r in body})
    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in body], dtype=np.float32)
    y = np.array([classes.index(r[t]) for r in body], dtype=np.float32)
    return x, y, "classification"


def moons(n, noise, rng):
    x, y = [], []
    for i in range(n):
        t = np.pi * (i // 2) / (max(n // 2, 2) - 1)
        if i % 2 == 0:
            x.append((np.cos(t), np.sin(t))), y.append(0.0)
        else:
            x.append((1 - np.cos(t), 0.5 - np.sin(t))), y.append(1.0)
    x = np.array(x) + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), np.array(y, dtype=np.float32), "classification"


def sine(n, noise, rng):
    x = rng.uniform(-3, 3, n)
    y = np.sin(x) + rng.normal(0, noise, n)
    return x.reshape(-1, 1).astype(np.float32), y.astype(np.float32), "regression"


def split(x, y, task, seed, fraction=0.2):
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if task == "classification" else [np.arange(len(y))]
    val = []
    for g in groups:
        g = rng.permutation(g)
        k = max(min(round(len(g) * fraction), len(g) - 1), int(len(g) > 1))
        val.extend(g[:k])
    mask = np.zeros(len(y), bool)
    mask[val] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def scale(xt, xv, kind):
    if kind == "none":
        return xt, xv
    if kind == "standard":
        mu, sd = xt.mean(0), xt.std(0)
        sd[sd == 0] = 1
        return (xt - mu) / sd, (xv - mu) / sd
    lo, hi = xt.min(0), xt.max(0)
    rng = np.where(hi > lo, hi - lo, 1)
    return (xt - lo) / rng, (xv - lo) / rng


def model(inputs, layers, task, l2=0.0, dropout=0.0):
    reg = keras.regularizers.l2(l2) if l2 > 0 else None
    m = keras.Sequential([keras.Input((inputs,))])
    for units in layers:
        m.add(keras.layers.Dense(units, activation="relu", kernel_regularizer=reg))
        if dropout > 0:
            m.add(keras.layers.Dropout(dropout))
    m.add(keras.layers.Dense(1, activation="sigmoid" if task == "classification" else None))
    loss, metric = ("binary_crossentropy", "accuracy") if task == "classification" else ("mse", "mse")
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=[metric])
    return m


def train(data, seed, layers, epochs, l2=0.0, dropout=0.0, scaling="standard"):
    """Trains one variant on one seed; returns its figures."""
    x, y, task = data
    xt, yt, xv, yv = split(x, y, task, seed)
    xt, xv = scale(xt, xv, scaling)
    keras.utils.set_random_seed(seed)
    m = model(x.shape[1], layers, task, l2, dropout)
    h = m.fit(xt, yt, validation_data=(xv, yv), epochs=epochs, batch_size=32, verbose=0)
    train_loss, train_metric = m.evaluate(xt, yt, verbose=0)
    val_loss, val_metric = m.evaluate(xv, yv, verbose=0)
    hidden = np.concatenate([l.kernel.numpy().ravel() for l in m.layers if isinstance(l, keras.layers.Dense)][:-1])
    reached = [i + 1 for i, v in enumerate(h.history["loss"]) if v <= 0.1]
    return {
        "train_metric": train_metric, "val_metric": val_metric, "train_loss": train_loss, "val_loss": val_loss,
        "gap_loss": val_loss - train_loss, "gap_metric": train_metric - val_metric,
        "near_zero": float(np.mean(np.abs(hidden) < 1e-3)), "mean_abs": float(np.mean(np.abs(hidden))),
        "epochs_to_target": reached[0] if reached else float("nan"),
    }


def pm(runs, key, fmt="{:.4f}", scale_by=1.0):
    v = [r[key] * scale_by for r in runs if r[key] == r[key]]
    if not v:
        return "not reached"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{fmt.format(statistics.mean(v))} ± {fmt.format(sd)}" + ("" if len(v) == len(runs) else f" ({len(v)} of {len(runs)})")


def table(title, header, rows):
    print(f"### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    a = p.parse_args()
    seeds = range(a.seeds)
    print(f"Keras {keras.__version__} ({keras.backend.backend()} backend), seeds {list(seeds)}\n", file=sys.stderr)
    bc = breast_cancer()

    rows = []
    for lam in [0.0, 1e-4, 1e-3, 1e-2, 1e-1]:
        runs = [train(bc, s, [64, 32], 100, l2=lam) for s in seeds]
        rows.append([f"{lam:g}", pm(runs, "train_metric"), pm(runs, "val_metric"), pm(runs, "gap_metric"),
                     pm(runs, "val_loss"), pm(runs, "near_zero", "{:.1f}%", 100), pm(runs, "mean_abs", "{:.5f}")])
    table("l2 — Keras", ["λ", "train accuracy", "val accuracy", "gap (train − val)", "val loss", "\\|w\\| < 1e-3",
                          "mean \\|w\\|"], rows)

    rows = []
    for name, draw in [("moons", lambda s: moons(100, 0.3, np.random.default_rng(s))),
                       ("sine", lambda s: sine(30, 0.3, np.random.default_rng(s)))]:
        for rate in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]:
            runs = [train(draw(s), s, [256, 256, 256], 300, dropout=rate) for s in seeds]
            rows.append([f"dropout {rate:g}", name, pm(runs, "train_loss"), pm(runs, "val_loss"),
                         pm(runs, "gap_loss"), pm(runs, "val_metric")])
    table("dropout — Keras", ["variant", "data", "train loss", "val loss", "gap (val − train loss)", "val metric"],
          rows)

    rows = []
    for kind in ["none", "standard", "minmax"]:
        runs = [train(bc, s, [64, 32], 100, scaling=kind) for s in seeds]
        rows.append([kind, pm(runs, "epochs_to_target", "{:.1f}"), pm(runs, "train_loss"), pm(runs, "val_loss"),
                     pm(runs, "val_metric")])
    table("scaling — Keras", ["scaling", "epochs to train loss ≤ 0.1", "final train loss", "final val loss",
                               "val accuracy"], rows)


if __name__ == "__main__":
    main()
