#!/usr/bin/env python3
"""Reads `catdog finetune --tensorboard DIR`'s event files with TensorBoard's own EventAccumulator and checks them
against the run's history.csv: every epoch's epoch_loss, epoch_accuracy (train and validation) and
epoch_learning_rate (train), the config text and the curves image.

    pip install tensorboard
    python3 scripts/check_tensorboard.py TB_DIR RUN_DIR
"""

import csv
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def load(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def main(tb_dir, run_dir):
    rows = list(csv.DictReader(open(Path(run_dir) / "history.csv")))
    train, val = load(Path(tb_dir) / "train"), load(Path(tb_dir) / "validation")
    worst = 0.0
    for side, acc, pairs in (
        ("train", train, [("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"), ("epoch_learning_rate", "lr")]),
        ("validation", val, [("epoch_loss", "val_loss"), ("epoch_accuracy", "val_accuracy")]),
    ):
        for tag, column in pairs:
            events = {e.step: e.value for e in acc.Scalars(tag)}
            assert sorted(events) == list(range(len(rows))), (side, tag, sorted(events))
            for step, row in enumerate(rows):
                want = float(row[column])
                worst = max(worst, abs(events[step] - want) / max(abs(want), 1e-12))
        print(f"{side}: {', '.join(sorted(acc.Tags()['scalars']))}")
    assert worst < 1e-6, f"largest relative difference {worst}"
    assert "curves" in train.Tags()["images"], train.Tags()
    config = train.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert config.startswith("```json"), config[:40]
    print(f"{len(rows)} epochs match history.csv (largest relative difference {worst:.1e}); config text and curves image present")


if __name__ == "__main__":
    main(*sys.argv[1:3])
