"""catdog: VGG16 transfer learning (feature extraction, block5 fine-tuning) on image folders and the
regularization labs, from Python. Every function runs catdog's Rust engine in this process, with the command
line's flags as keyword arguments (``batch_size=16`` is ``--batch-size 16``; ``True`` turns a switch on).

    import catdog
    run = catdog.finetune(data="data/dogs-vs-cats", epochs=30)   # a Run; shows its curves in a notebook
    catdog.evaluate(checkpoint=run.best, data="data/dogs-vs-cats")
    catdog.predict(checkpoint=run.best, paths=["cat.jpg"])

Errors: ``ValueError`` for what the command line calls a usage error, ``OSError`` for files and the network,
``RuntimeError`` otherwise. Interrupting a cell stops training as Ctrl-C does (``last.safetensors`` is written)
and raises ``KeyboardInterrupt``; ``finetune(resume=run.dir, epochs=N)`` continues it.
"""

from ._api import CourseReport, augment_preview, course, evaluate, export, extract, finetune, info, lab, lr_find, predict
from ._native import __version__
from ._run import Run

__all__ = [
    "CourseReport",
    "Run",
    "augment_preview",
    "course",
    "evaluate",
    "export",
    "extract",
    "finetune",
    "info",
    "lab",
    "lr_find",
    "predict",
    "__version__",
]
