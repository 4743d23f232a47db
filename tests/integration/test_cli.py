"""The command line end to end on a tiny dataset, and its bad-input contract."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.helpers.clicheck import one_error_line
from tests.helpers.clicheck import TINY
from PIL import Image

from ssimae.runs.checkpoint import load_checkpoint
from ssimae.cli.main import main
from ssimae.io.images import read_image
from ssimae.runs.settings import RunSettings


def test_train_writes_run_folder(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= {"model.pt", "config.json", "train_log.csv"}
    ck = load_checkpoint(trained_run)
    t, i = ck["settings"].train, ck["settings"].inference
    assert ck["finished"] and ck["epoch"] == 1
    assert t.model == "ssim" and t.latent_dim == 8
    # paper defaults are stored for inference
    assert i.stride == 30 and i.opening_diameter == 4 and t.lr == 2e-4
    assert t.weight_decay == 1e-5 and i.ssim.window_size == 11 and i.residual == "ssim"
    assert i.threshold is not None and np.isfinite(i.threshold) and i.threshold_rule == "fpr"  # measured default
    config = json.loads((trained_run / "config.json").read_text())
    assert config["version"] == 2 and config["train"]["model"] == "ssim" and config["inference"]["stride"] == 30
    assert RunSettings.from_dict(config) == ck["settings"]  # the final settings, threshold included


def test_evaluate_writes_metrics(trained_run, demo_root, tmp_path):
    out = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "--data", str(demo_root), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("pixel_roc_auc", "pixel_roc_auc_fpr30", "n_images", "model", "residual", "per_type",
                "pro_auc_fpr30", "image_roc_auc"):
        assert key in m
    assert m["model"] == "ssim" and m["residual"] == "ssim" and m["n_images"] == 5
    assert 0 <= m["pixel_roc_auc"] <= 1 and set(m["per_type"]) == {"cut", "roughened", "contamination"}
    assert (out / "roc.png").stat().st_size > 0
    header = (out / "roc.csv").read_text().splitlines()[0]
    assert header.replace(" ", "") == "threshold,fpr,tpr"


def test_predict_mirrors_paths_and_raw_maps(trained_run, demo_root, tmp_path):
    out = tmp_path / "pred"
    test_dir = demo_root / "test"
    assert main(["predict", str(trained_run), str(test_dir), "--out", str(out), "--save-raw", "--quiet"]) == 0
    for img in test_dir.rglob("*.png"):
        rel = img.relative_to(test_dir).with_suffix("")
        raw = np.load(out / f"{rel}.npy")
        assert raw.dtype == np.float32 and raw.shape == read_image(img).shape
        mask = np.array(Image.open(out / f"{rel}_mask.png"))
        assert mask.shape == raw.shape and set(np.unique(mask)) <= {0, 255}
        assert (out / f"{rel}_heatmap.png").exists() and (out / f"{rel}_overlay.png").exists()
    # a threshold above every residual marks nothing
    out2 = tmp_path / "pred2"
    one = next(test_dir.rglob("*.png"))
    assert main(["predict", str(trained_run), str(one), "--out", str(out2), "--threshold", "1e9", "--quiet"]) == 0
    assert np.array(Image.open(out2 / f"{one.stem}_mask.png")).max() == 0


@pytest.mark.parametrize("model", ["l2", "vae"])
def test_resume_reproduces_uninterrupted_run(demo_root, tmp_path, model):
    args = ["--data", str(demo_root), "--model", model, "--epochs", "2", "--patches-per-epoch", "16",
            "--batch-size", "8", "--latent-dim", "8", "--quiet"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "--out", str(full), *args]) == 0
    # a budget of 0 minutes stops cleanly after the first step and saves
    assert main(["train", "--out", str(part), *args, "--max-minutes", "0"]) == 0
    ck = load_checkpoint(part)
    assert (ck["epoch"], ck["step"], ck["finished"]) == (0, 1, False)
    assert main(["train", "--out", str(part), *args, "--resume"]) == 0
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert b["finished"] and b["epoch"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


def test_resume_without_epochs_keeps_the_runs_length(demo_root, tmp_path):
    """--resume with no --epochs finishes the run's own epochs, not the default 200."""
    args = ["--data", str(demo_root), "--model", "l2", "--patches-per-epoch", "16", "--batch-size", "8",
            "--latent-dim", "8", "--quiet"]
    part = tmp_path / "part"
    assert main(["train", "--out", str(part), *args, "--epochs", "2", "--max-minutes", "0"]) == 0
    assert main(["train", "--out", str(part), *args, "--resume"]) == 0
    ck = load_checkpoint(part)
    assert ck["finished"] and ck["epoch"] == 2 and ck["settings"].train.epochs == 2


def test_refuses_to_overwrite_run(trained_run, demo_root, capsys):
    before = (trained_run / "model.pt").read_bytes()
    assert main(["train", "--data", str(demo_root), "--out", str(trained_run), *TINY]) == 2
    one_error_line(capsys, "--resume")
    assert (trained_run / "model.pt").read_bytes() == before


def test_missing_and_empty_data(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *TINY]) == 2
    one_error_line(capsys, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), *TINY]) == 2
    one_error_line(capsys, tmp_path / "empty")
    assert not (tmp_path / "r" / "model.pt").exists()


def test_corrupt_and_foreign_checkpoints(tmp_path, demo_root, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["predict", str(bad), str(demo_root / "test"), "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert main(["evaluate", str(foreign), "--data", str(demo_root), "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, foreign, "not an ssimae checkpoint")


def test_bad_test_data_keeps_existing_report(trained_run, demo_root, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    report = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "--data", str(data), "--out", str(report), "--quiet"]) == 0
    before = (report / "metrics.json").read_bytes()
    mask = next((data / "ground_truth").rglob("*_mask.png"))
    Image.fromarray(np.zeros((50, 70), np.uint8)).save(mask)  # wrong size
    assert main(["evaluate", str(trained_run), "--data", str(data), "--out", str(report), "--quiet"]) == 2
    one_error_line(capsys, mask.name)
    assert (report / "metrics.json").read_bytes() == before
    img = next((data / "test" / "good").glob("*.png"))
    img.write_bytes(img.read_bytes()[:200])  # truncated image
    shutil.copy(demo_root / "ground_truth" / mask.parent.name / mask.name, mask)
    assert main(["evaluate", str(trained_run), "--data", str(data), "--out", str(report), "--quiet"]) == 2
    one_error_line(capsys, img.name)


def test_console_script_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ssimae.cli", "predict", str(tmp_path / "none.pt"), str(tmp_path),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "none.pt" in r.stderr


@pytest.mark.parametrize("cmd", ["train", "evaluate", "predict", "serve", "compare", "demo", "make-demo-data"])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: ssimae " + cmd in capsys.readouterr().out


def _not_an_image(data):
    f = data / "train" / "good" / "notes.png"
    f.write_text("this is not an image")
    return f


def _zero_bytes(data):
    f = data / "train" / "good" / "000.png"
    f.write_bytes(b"")
    return f


def _mask_without_image(data):
    f = data / "ground_truth" / "cut" / "099_mask.png"
    Image.fromarray(np.zeros((160, 160), np.uint8)).save(f)
    return f


def _image_without_mask(data):
    (data / "ground_truth" / "cut" / "000_mask.png").unlink()
    return data / "test" / "cut" / "000.png"


@pytest.mark.parametrize("damage", [_not_an_image, _zero_bytes, _mask_without_image, _image_without_mask])
def test_bad_data_stops_before_training(demo_root, tmp_path, capsys, damage):
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    bad = damage(data)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY]) == 2
    one_error_line(capsys, bad.name)
    assert not (run / "model.pt").exists()
    if damage in (_not_an_image, _zero_bytes):  # --skip-bad logs the file and trains on the rest
        assert main(["train", "--data", str(data), "--out", str(run), "--skip-bad", *TINY]) == 0
        assert f"skipping {bad}" in capsys.readouterr().err  # problems on stderr (#13)
        assert (run / "model.pt").exists()


def test_a_log_file_gets_one_line_per_epoch_and_no_progress_bars(demo_root, tmp_path):
    """Without a terminal (stdout and stderr to a file) tqdm's bars stay off (``disable=None``):
    no carriage returns, and training logs exactly one line per epoch."""
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "ssimae.cli", "train", "--data", str(demo_root), "--out",
                            str(tmp_path / "run"), "--epochs", "2", "--patches-per-epoch", "16", "--batch-size", "8",
                            "--latent-dim", "8"], stdout=f, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\r" not in text and "it/s" not in text
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
