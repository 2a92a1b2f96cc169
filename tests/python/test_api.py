"""The ``catdog`` package, installed from the wheel into a fresh virtual environment (``.ci/run`` builds and
installs it): each function against the command line it mirrors, the errors, and an interrupted run."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import catdog
from conftest import TINY, write_png

CLI = str(Path(sys.executable).parent / "catdog")


def cli_json(*args):
    out = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, check=True).stdout
    return out


def test_finetune_returns_a_run_with_its_config_history_checkpoints_and_curves(trained):
    assert isinstance(trained, catdog.Run)
    assert trained.config["epochs"] == 2 and trained.config["size"] == 32
    history = trained.history
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(history[0])
    assert isinstance(history[0]["loss"], float)
    assert trained.best.exists() and trained.last.exists()
    page = trained._repr_html_()
    assert "data:image/png;base64," in page and "<pre>" in page, page[:300]


def test_evaluate_returns_exactly_what_evaluate_json_prints(trained, data):
    result = catdog.evaluate(checkpoint=trained.best, data=data, quiet=True)
    printed = json.loads(cli_json("evaluate", "--checkpoint", trained.best, "--data", data, "--json", "--quiet"))
    assert list(result) == list(printed)
    assert result["accuracy"] == printed["accuracy"] and result["images"] == 8
    assert result["classes"] == ["cats", "dogs"]


def test_predict_returns_the_lines_of_predict_json_with_an_error_for_a_bad_file(trained, data, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    good = data / "test" / "cats" / "cats.000.png"
    lines = catdog.predict(checkpoint=trained.best, paths=[good, broken], quiet=True)
    printed = [json.loads(l) for l in cli_json("predict", "--checkpoint", trained.best, good, broken, "--json", "--quiet").splitlines()]
    assert lines == printed
    assert lines[0]["label"] in ("cats", "dogs") and set(lines[0]["probabilities"]) == {"cats", "dogs"}
    assert "error" in lines[1] and lines[1]["path"].endswith("broken.png")


def test_extract_returns_a_float32_nchw_array_and_its_metadata(data):
    np = pytest.importorskip("numpy")
    features, meta = catdog.extract(data / "test", weights="random:4,4,4,4,4", size=32, layer="block2_pool", quiet=True)
    assert features.dtype == np.float32 and features.shape == (8, 4, 8, 8)
    assert meta["layer"] == "block2_pool" and meta["classes"] == ["cats", "dogs"] and len(meta["files"]) == 8
    assert np.isfinite(features).all()


def test_lab_returns_its_results_and_shows_its_table(tmp_path):
    result = catdog.lab("l2", dataset="moons", n=80, epochs=2, seeds=1, out=tmp_path, quiet=True)
    assert result["lab"] == "l2" and result["rows"] and "_dir" not in result
    assert result.dir == tmp_path / "l2" and "|" in result._repr_markdown_()


def test_lr_find_returns_what_lr_find_json_prints(data, tmp_path):
    small = dict(weights="random:4,4,4,4,4", size=32, batch_size=8, hidden=8, iters=20)
    result = catdog.lr_find(data=data, out=tmp_path / "lr.png", quiet=True, **small)
    flags = [a for k, v in small.items() for a in ("--" + k.replace("_", "-"), v)]
    printed = json.loads(cli_json("lr-find", "--data", data, "--out", tmp_path / "cli.png", "--json", "--quiet", *flags))
    assert result == printed and 0 < result["suggestion"] < 10
    assert (tmp_path / "lr.png").exists()


def test_course_runs_its_recipes_and_shows_the_report(data, tmp_path):
    tiny = {k: v for k, v in TINY.items() if k not in ("lr", "quiet")}
    report = catdog.course(data=data, out=tmp_path, recipes=["extract"], epochs=1, quiet=True, **tiny)
    assert isinstance(report, catdog.CourseReport) and Path(report["out"]) == tmp_path
    [row] = report["recipes"]
    assert row["recipe"].startswith("(a)") and 0 <= row["test_accuracy"] <= 1
    assert "| (a)" in report._repr_markdown_()
    assert json.loads((tmp_path / "report.json").read_text()) == report["recipes"]


def test_the_onnx_export_gives_predicts_probabilities_in_onnxruntime(trained, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")

    written = catdog.export(trained.best, tmp_path / "model.onnx")
    assert written["opset"] == 17 and (tmp_path / "model.onnx").stat().st_size == written["bytes"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ["cats", "dogs"] and meta["size"] == "32"
    # 32×32 images (the checkpoint's size, so that catdog's resize leaves them as they are).
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(pixels):
        write_png(folder / f"{i}.png", 32, 32, lambda x, y, img=img: tuple(int(v) for v in img[y, x]))
    ours = {Path(r["path"]).name: r["probabilities"] for r in catdog.predict(trained.best, folder, kernels="portable", quiet=True)}
    (probs,) = session.run(["probabilities"], {"pixels": pixels.transpose(0, 3, 1, 2).astype(np.float32)})
    for i, row in enumerate(probs):
        want = [ours[f"{i}.png"][c] for c in ("cats", "dogs")]
        assert np.max(np.abs(np.asarray(want) - row)) <= 1e-5, (want, row)


def test_augment_preview_writes_the_grid(data, tmp_path):
    out = catdog.augment_preview(data=data / "train", augment=True, shear=10, n=2, samples=2, size=32, out=tmp_path / "grid.png", quiet=True)
    assert out.exists() and out.read_bytes()[:4] == b"\x89PNG"


def test_a_usage_error_is_a_value_error_and_a_missing_file_an_os_error(data, tmp_path):
    with pytest.raises(ValueError, match="--size 5"):
        catdog.finetune(data=data, size=5, quiet=True, runs_dir=tmp_path)
    with pytest.raises(ValueError, match="unexpected argument"):
        catdog.finetune(data=data, no_such_flag=1)
    with pytest.raises(OSError, match="missing.safetensors"):
        catdog.evaluate(checkpoint=tmp_path / "missing.safetensors", data=data, quiet=True)


def test_an_interrupted_run_saves_its_state_and_resumes(data, tmp_path):
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            catdog.finetune(data=data, epochs=100_000, runs_dir=tmp_path, name="stopped", **TINY)
    finally:
        timer.cancel()
    run = catdog.Run(tmp_path / "stopped")
    assert run.last.exists(), "last.safetensors is written when the run stops"
    assert not (run.dir / ".lock").exists(), "the lock is released"
    done = len(run.history)
    resumed = catdog.finetune(resume=run.dir, epochs=done + 1, quiet=True)
    assert resumed.dir == run.dir and len(resumed.history) == done + 1


def test_the_console_script_is_the_command_line():
    out = subprocess.run([CLI, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("catdog ")
    bad = subprocess.run([CLI, "finetune", "--size", "5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--size 5" in bad.stderr
    info = json.loads(cli_json("info", "--json"))
    assert info == catdog.info() | {"threads": info["threads"]}


def test_to_pandas_gives_the_history(trained):
    pytest.importorskip("pandas")
    frame = trained.to_pandas()
    assert list(frame["epoch"]) == [1, 2]
