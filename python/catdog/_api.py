"""The functions of the ``catdog`` package: each builds the command line's arguments from keyword arguments and
runs it in process through the Rust extension."""

import json
import os
import tempfile
from pathlib import Path

from . import _native
from ._run import Run


def _flags(kwargs):
    """``{"batch_size": 16, "augment": True, "layers": [64, 32]}`` -> ``["--batch-size", "16", "--augment",
    "--layers", "64,32"]``; ``None`` and ``False`` are left out."""
    argv = []
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(os.fspath(v)) if isinstance(v, os.PathLike) else str(v) for v in value)]
        else:
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


def _call(command, kwargs, positional=()):
    argv = ["catdog", *command, *_flags(kwargs), *[os.fspath(p) for p in positional]]
    return json.loads(_native.call(argv))


def finetune(data=None, **kwargs):
    """Trains as ``catdog finetune`` (every flag as a keyword: ``mode``, ``weights``, ``epochs``, ``batch_size``,
    ``size``, ``runs_dir``, ``name``, ``resume``, ``quiet``, …) and returns the ``Run``."""
    result = _call(["finetune"], {"data": data, **kwargs})
    return Run(result["run_dir"])


def evaluate(checkpoint, data=None, **kwargs):
    """Evaluates as ``catdog evaluate --json`` and returns its dict (loss, accuracy, confusion, per_class, roc_auc,
    …)."""
    return _call(["evaluate"], {"checkpoint": checkpoint, "data": data, **kwargs})


def predict(checkpoint, paths, **kwargs):
    """Predicts image files or folders as ``catdog predict --json``: a list of dicts (``path``, ``label``,
    ``probabilities``), or ``path`` and ``error`` for a file that could not be read."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return _call(["predict"], {"checkpoint": checkpoint, **kwargs}, positional=paths)


def export(checkpoint, out, format="onnx"):
    """Writes a checkpoint as one ONNX graph as ``catdog export`` (input ``pixels``: float32 N×3×S×S RGB 0–255;
    output ``probabilities``) and returns what ``export --json`` prints (out, opset, nodes, parameters, bytes)."""
    return _call(["export"], {"checkpoint": checkpoint, "out": out, "format": format})


def extract(paths, out=None, **kwargs):
    """Runs the conv base over images as ``catdog extract`` (``weights``, ``layer``, ``size``, …) and returns
    ``(features, metadata)``: a float32 numpy array N×C×H×W and the file's metadata (files, labels, classes, layer,
    …). Without ``out`` the file is temporary."""
    from ._safetensors import read

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(out) if out is not None else Path(tmp) / "features.safetensors"
        _call(["extract"], {"out": target, **kwargs}, positional=paths)
        tensors, meta = read(target)
    return tensors["features"], meta


def augment_preview(out="augment-preview.png", **kwargs):
    """Writes an augmentation preview grid as ``catdog augment preview`` and returns its path."""
    _call(["augment", "preview"], {"out": out, **kwargs})
    return Path(out)


class LabResult(dict):
    """A lab's results.json as a dict (``dir`` is its folder); shows its table in a notebook."""

    dir = None

    def _repr_markdown_(self):
        table = Path(self.dir) / "table.md" if self.dir else None
        return table.read_text() if table and table.exists() else None


def lab(name, **kwargs):
    """Runs a regularization lab as ``catdog lab NAME`` (``out``, ``seeds``, ``epochs``, ``dataset``, ``csv``, …)
    and returns its results.json content (a list of them for ``"all"``)."""
    kwargs.setdefault("out", "labs")
    result = _call(["lab", name], kwargs)
    loaded = []
    for path in result["results"]:
        value = LabResult(json.loads(Path(path).read_text()))
        value.dir = Path(path).parent
        loaded.append(value)
    return loaded[0] if name != "all" else loaded


def lr_find(data=None, **kwargs):
    """fastai's learning-rate finder as ``catdog lr-find --json`` (``mode``, ``weights``, ``start_lr``,
    ``end_lr``, ``iters``, ``out`` for the plot, …): a dict with ``suggestion`` (the valley), ``steepest`` and
    the ``points`` [lr, smoothed loss]. It saves no run."""
    return _call(["lr-find"], {"data": data, **kwargs})


class CourseReport(dict):
    """``catdog course``'s result: ``out`` (its folder) and ``recipes`` (report.json's rows); shows report.md and
    report.png in a notebook."""

    def _repr_markdown_(self):
        report = Path(self["out"]) / "report.md"
        return report.read_text() if report.exists() else None


_COURSE_FLAGS = ("out", "recipes", "epochs", "quick", "quiet", "threads")


def course(data=None, **kwargs):
    """Runs the course's recipes as ``catdog course`` (``out``, ``recipes``, ``epochs``, ``quick``); any other
    keyword is a ``finetune`` flag given to every recipe (``weights``, ``preprocess``, ``precision``, …). Returns a
    ``CourseReport``."""
    own = {k: v for k, v in kwargs.items() if k in _COURSE_FLAGS}
    shared = _flags({k: v for k, v in kwargs.items() if k not in _COURSE_FLAGS})
    positional = ["--", *shared] if shared else []
    return CourseReport(_call(["course"], {"data": data, **own}, positional=positional))


def info():
    """What ``catdog info --json`` reports: version, CPU and kernels, threads, CUDA, hub settings."""
    return _call(["info"], {})
