"""The README's first command, end to end on a tiny budget: ``ssimae demo``."""
from __future__ import annotations

import csv
import json

import pytest

from ssimae.commands import demo
from ssimae.cli.main import main
from ssimae.data.demo_data import make_color_demo_data, make_demo_data
from tests.helpers.demo import tiny_demo


def test_demo_end_to_end_on_a_tiny_budget(tmp_path, monkeypatch):
    tiny_demo(monkeypatch, make_demo_data, n_test_good=2, n_test_per_type=1)
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    for name in ("results.md", "results.json", "roc.png", "examples.png", "report.html"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())
    assert {(r["model"], r["residual"]) for r in rows} >= {("ssim", "ssim"), ("l2", "l2"), ("inpaint", "ssim")}
    for model in demo.DEMO_MODELS:
        preds = out / "predictions" / model
        lines = (preds / "predictions.csv").read_text().splitlines()
        assert len(lines) == 1 + 2 + 3  # header, 2 defect-free and 1 image of each of the 3 types
        assert (preds / "report.html").is_file()
        config = json.loads((out / "runs" / model / "config.json").read_text())
        assert config["train"]["recipe"] == demo.DEMO_RECIPES[model] and config["train"]["epochs"] == 1
        # every run holds an image threshold, and the verdicts use it
        assert config["inference"]["image_threshold"] is not None
        rows = list(csv.DictReader(lines))
        assert {r["outcome"] for r in rows} <= {"pass", "found", "false reject", "escape"}
        assert all(r["image_threshold"] and r["label"] for r in rows)
    _thresholds_rest_on_the_calibration_images(out, out / "data")
    assert "thresholds set on 3 new good parts" in (out / "report.html").read_text()


def _thresholds_rest_on_the_calibration_images(out, data):
    """Every run's stored thresholds are those ``ssimae calibrate RUN --good DATA/calibration/good``
    sets: the image threshold rests on the 3 calibration images and equals what calibration
    computes on them again; a second pass (a rerun of the demo) changes nothing."""
    from ssimae.commands.calibrate import calibrate_once
    from ssimae.inference.calibration import calibrate
    from ssimae.inference.detector import Detector
    from ssimae.runs.checkpoint import load_checkpoint

    folder = (data / "calibration" / "good").resolve()
    files = sorted(folder.glob("*.png"))
    assert len(files) == 3
    for model in demo.DEMO_MODELS:
        run = out / "runs" / model
        inference = load_checkpoint(run)["settings"].inference
        assert inference.image_threshold_images == 3
        assert [h["good"] for h in inference.threshold_history] == [str(folder)]
        again = calibrate(Detector.load(run, "cpu"), files, progress=False)
        assert again.images == 3
        assert inference.image_threshold == pytest.approx(again.image_threshold, rel=1e-6)
        assert inference.threshold == pytest.approx(again.threshold, rel=1e-6)
        assert not calibrate_once(run, data / "calibration" / "good", progress=False, log=None)
        assert load_checkpoint(run)["settings"].inference.threshold_history == inference.threshold_history


def test_color_demo_on_a_tiny_budget(tmp_path, monkeypatch):
    from ssimae.runs.checkpoint import load_checkpoint

    tiny_demo(monkeypatch, make_color_demo_data, n_test_good=1, n_test_per_type=1)
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--color", "--quiet"]) == 0
    assert (out / "data-color" / "test" / "hue").is_dir() and not (out / "data").exists()
    for model in demo.DEMO_MODELS:
        assert load_checkpoint(out / "runs" / model)["settings"].inference.preprocess.color
        assert len((out / "predictions" / model / "predictions.csv").read_text().splitlines()) == 1 + 1 + 2
    _thresholds_rest_on_the_calibration_images(out, out / "data-color")
