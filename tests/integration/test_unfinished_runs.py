"""Unfinished runs are refused clearly: while another process's training holds a run's lock
(the lock as ``ssimae train`` writes it, held by a real second process), predict,
calibrate, export, evaluate and serve answer one line naming its pid and epoch (read from
config.json and train_log.csv, as training writes them), also before the first checkpoint; a
checkpoint without a threshold is never exported; predict given an export uses the ONNX
engine, calibrate refuses one in one line."""
import csv
import json
import shutil
import subprocess
import sys

import pytest

from ssimae.cli.main import main
from ssimae.runs.checkpoint import load_run, save_run
from tests.helpers.clicheck import one_error_line
from tests.helpers.paths import SRC

HOLD = ("import sys, time; from ssimae.io.folders import RunLock; from ssimae.runs.checkpoint import TRAINING\n"
        "with RunLock(sys.argv[1], TRAINING):\n    print('held', flush=True); time.sleep(120)")


@pytest.fixture
def training(trained_run, tmp_path):
    """(run folder, pid): a copy of a run, said by its config and log to be in epoch 2 of 3,
    whose lock a second process holds as training does."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["epochs"] = 3
    (run / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                            env={"PYTHONPATH": str(SRC), "PATH": ""})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield run, proc.pid
    finally:
        proc.kill()
        proc.wait()


def commands(run, demo_root, out):
    good, image = demo_root / "train" / "good", sorted((demo_root / "test").rglob("*.png"))[0]
    return {"predict": ["predict", str(run), str(image), "--out", str(out / "p")],
            "calibrate": ["calibrate", str(run), "--good", str(good)],
            "export": ["export", str(run), "--out", str(out / "x")],
            "evaluate": ["evaluate", str(run), "--out", str(out / "e")],
            "serve": ["serve", str(run), "--port", "0"]}


def test_every_command_says_training_in_progress(training, demo_root, tmp_path, capsys):
    run, pid = training
    for name, argv in commands(run, demo_root, tmp_path).items():
        if name == "serve":
            pytest.importorskip("uvicorn")
        assert main(argv) == 2, name
        one_error_line(capsys, f"training in progress (pid {pid}, epoch 2 of 3)")
    assert not (tmp_path / "x").exists() and not (tmp_path / "p").exists()  # nothing made


def test_before_the_first_checkpoint(training, demo_root, tmp_path, capsys):
    run, pid = training
    (run / "model.pt").unlink()
    (run / "train_log.csv").unlink()
    assert main(commands(run, demo_root, tmp_path)["predict"]) == 2
    one_error_line(capsys, f"training in progress (pid {pid}, epoch 1 of 3)")


def test_after_a_complete_epoch_the_next_is_named(training, demo_root, tmp_path, capsys):
    run, pid = training
    with open(run / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([rows[0], {**rows[0], "epoch": "2"}])
    assert main(commands(run, demo_root, tmp_path)["evaluate"]) == 2
    one_error_line(capsys, f"training in progress (pid {pid}, epoch 3 of 3)")


def test_a_run_without_threshold_is_never_exported(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    loaded = load_run(run)
    loaded.settings.inference.threshold = None
    save_run(loaded.path, loaded.settings, {**loaded.state, "finished": False})
    assert main(["export", str(run), "--out", str(tmp_path / "x")]) == 2
    one_error_line(capsys, "stores no threshold", "ssimae calibrate")
    assert not (tmp_path / "x").exists()


def test_an_export_is_scored_by_onnx_and_not_recalibrated(trained_run, demo_root, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    assert main(["export", str(trained_run), "--out", str(tmp_path / "x"), ]) == 0
    image = sorted((demo_root / "test").rglob("*.png"))[0]
    for out, extra in (("onnx", ["--engine", "onnx"]), ("auto", [])):
        assert main(["predict", str(tmp_path / "x"), str(image), "--out", str(tmp_path / out), "--quiet", *extra]) == 0
    rows = [json.loads((tmp_path / o / "predictions.jsonl").read_text()) for o in ("onnx", "auto")]
    assert rows[0] == rows[1]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "x"), str(image), "--out", str(tmp_path / "t"), "--engine", "torch"]) == 2
    one_error_line(capsys, "this is an export", "--engine onnx")
    assert main(["calibrate", str(tmp_path / "x"), "--good", str(demo_root / "train" / "good")]) == 2
    one_error_line(capsys, "an export cannot be recalibrated")
