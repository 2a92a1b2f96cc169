"""Tiny image folders written here (no image library needed), for the tests of the ``catdog`` package."""

import random
import struct
import zlib
from pathlib import Path

import pytest


def write_png(path, width, height, pixel):
    """A truecolour PNG whose pixel (x, y) is ``pixel(x, y)`` -> (r, g, b)."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def make_split(root, per_class, seed):
    """``root/cats`` reddish and ``root/dogs`` bluish 40×36 images, with noise."""
    rng = random.Random(seed)
    for cls, base in (("cats", (190, 70, 40)), ("dogs", (40, 80, 190))):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = [rng.randint(-30, 30) for _ in range(3)]
            color = tuple(max(0, min(255, c + n)) for c, n in zip(base, noise))
            write_png(folder / f"{cls}.{i:03}.png", 40, 36, lambda x, y, c=color: c if (x // 4 + y // 4) % 2 else (20, 20, 20))


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_split(root / "train", 10, 1)
    make_split(root / "test", 4, 2)
    return root


#: Keyword arguments that make a run small and fast.
TINY = dict(weights="random:4,4,4,4,4", size=32, batch_size=8, hidden=8, lr=1e-3, quiet=True)


@pytest.fixture(scope="session")
def trained(data, tmp_path_factory):
    import catdog

    runs = tmp_path_factory.mktemp("runs")
    return catdog.finetune(data=data, epochs=2, runs_dir=runs, name="base", **TINY)
