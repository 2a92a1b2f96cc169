"""Reads the f32 tensors and the metadata of a safetensors file (what ``catdog extract`` writes) with numpy."""

import json
import struct
from pathlib import Path


def read(path):
    """Returns ``({name: numpy.ndarray}, {key: value})``; metadata values that hold JSON are decoded."""
    import numpy as np

    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    raw_meta = header.pop("__metadata__", {}) or {}
    start = 8 + length
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name!r} is {info['dtype']}, not F32")
        begin, end = info["data_offsets"]
        array = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=start + begin)
        tensors[name] = array.reshape(info["shape"]).copy()
    meta = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except (TypeError, ValueError):
            meta[key] = value
    return tensors, meta
