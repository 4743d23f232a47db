"""Faults a hostile or careless user runs into (issue #13): each ends with one line, exit 2,
no traceback, and nothing already written is lost; nothing hangs."""
import os
import shutil

import numpy as np
import pytest
from tests.helpers.clicheck import one_error_line
from tests.helpers.clicheck import TINY
from PIL import Image

from ssimae.cli.main import main


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 4 + 5: every option is checked before any work starts -------------------------------------

BAD_TRAIN_OPTIONS = [
    (["--opening-diameter", "-1"], "--opening-diameter"),
    (["--min-defect-area", "-5"], "--min-defect-area"),
    (["--max-minutes", "-1"], "--max-minutes"),
    (["--max-minutes", "nan"], "--max-minutes"),
    (["--ssim-window", "0"], "window"),
    (["--ssim-window", "8"], "window"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--seed", "-1"], "--seed"),
    (["--workers", "-1"], "--workers"),
    (["--stride", "0"], "--stride"),
    (["--val-fraction", "1.5"], "--val-fraction"),
]


@pytest.mark.parametrize("option,needle", BAD_TRAIN_OPTIONS, ids=[" ".join(o) for o, _ in BAD_TRAIN_OPTIONS])
def test_bad_train_option_refused_before_work(tmp_path, demo_root, capsys, option, needle):
    out = tmp_path / "run"
    assert main(["train", "--data", str(demo_root), "--out", str(out), *TINY, *option]) == 2
    one_error_line(capsys, needle)
    assert not out.exists()  # refused before the dataset was read or the folder made


def test_bad_predict_threshold(tmp_path, trained_run, demo_root, capsys):
    out = tmp_path / "pred"
    for value in ("nan", "inf"):
        assert main(["predict", str(trained_run), str(demo_root / "test" / "good"), "--out", str(out),
                     "--threshold", value, "--quiet"]) == 2
        one_error_line(capsys, "--threshold")
    assert not out.exists()


def test_resume_refuses_changed_settings(tmp_path, trained_run, demo_root, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    for option, needle in ((["--model", "l2"], "--model"), (["--lr", "0.001"], "--lr"),
                           (["--latent-dim", "16"], "--latent-dim"), (["--scale", "0.5"], "--scale"),
                           (["--resize", "200"], "--resize"), (["--color"], "--color"),
                           (["--seed", "3"], "--seed"), (["--ssim-uniform"], "--ssim-uniform"),
                           (["--preset", "texture"], "--preset"), (["--channels-last"], "--channels-last")):
        assert main(["train", "--data", str(demo_root), "--out", str(run), "--resume", *TINY, *option]) == 2
        one_error_line(capsys, needle)
    assert snapshot(run) == before


def test_resume_refuses_changed_model_options_and_accepts_the_same(tmp_path, demo_root, capsys):
    run = tmp_path / "vae"
    args = ["train", "--data", str(demo_root), "--model", "vae", "--out", str(run), *TINY]
    assert main([*args, "--vae-samples", "2", "--seed", "1"]) == 0
    before = snapshot(run)
    assert main([*args, "--resume", "--vae-samples", "3"]) == 2
    one_error_line(capsys, "--vae-samples")
    assert main([*args, "--resume", "--seed", "0"]) == 2
    one_error_line(capsys, "--seed")
    assert snapshot(run) == before
    # the run's own values, given again, are accepted
    assert main([*args, "--resume", "--vae-samples", "2", "--seed", "1", "--epochs", "2"]) == 0


def test_evaluate_residual_the_run_cannot_make(tmp_path, trained_run, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "--out", str(out), "--residual", "vae", "--quiet"]) == 2
    one_error_line(capsys, "vae")
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "under-a-file", "readonly"])
def test_output_folder_unusable(tmp_path, trained_run, demo_root, capsys, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "under-a-file":
        (tmp_path / "f").write_text("not a folder")
        target = tmp_path / "f" / "out"
    else:
        target.mkdir()
        target.chmod(0o500)
        if os.access(target, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
    try:
        assert main(["train", "--data", str(demo_root), "--out", str(target), *TINY]) == 2
        one_error_line(capsys, target)
        assert main(["evaluate", str(trained_run), "--out", str(target), "--quiet"]) == 2
        one_error_line(capsys, target)
        assert main(["predict", str(trained_run), str(demo_root / "test" / "good"), "--out", str(target),
                     "--quiet"]) == 2
        one_error_line(capsys, target)
    finally:
        if target.is_dir():
            target.chmod(0o700)


# --- 1: symbolic link loops in a data folder -------------------------------------------------

def _images(folder, n, size=160):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_walker_refuses_symlink_loops(tmp_path):
    from ssimae.data.datasets import load_dataset, walk_images

    good = _images(tmp_path / "good", 3)
    (good / "loop").symlink_to(".")
    (good / "up").symlink_to("..")
    (good / "same.png").symlink_to(good / "000.png")
    assert walk_images(good) == sorted(good / f"{i:03d}.png" for i in range(3))
    test = _images(tmp_path / "test" / "good", 2).parent
    (test / "good" / "loop").symlink_to("..")
    ds = load_dataset(train_dir=good, test_dir=test)
    assert len(ds.train) == 3  # each image once, not 111 (and the walk ends)
    assert len(ds.test) == 2


def test_predict_inputs_on_a_looping_folder(tmp_path):
    from ssimae.commands.predict import collect_inputs

    good = _images(tmp_path / "good", 3)
    (good / "loop").symlink_to(".")
    (good / "up").symlink_to("..")
    assert [f for f, _ in collect_inputs([good])] == sorted(good / f"{i:03d}.png" for i in range(3))


# --- 6: one image-size limit for every decoder -----------------------------------------------

@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_decompression_bomb_limit_for_every_decoder(tmp_path, monkeypatch, suffix):
    import tifffile

    from ssimae.errors import SsimaeError
    from ssimae.io.images import read_image

    path = tmp_path / f"big{suffix}"
    data = np.zeros((100, 120), np.uint8)
    if suffix == ".tif":
        tifffile.imwrite(path, data, tile=(32, 32), compression="zlib")
    else:
        Image.fromarray(data).save(path)
    assert read_image(path).shape == (100, 120)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # limit 4000 pixels: 12000 is too many
    with pytest.raises(SsimaeError, match="too large") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_predict_refuses_a_bomb_tiff_in_one_line(tmp_path, trained_run, monkeypatch, capsys):
    import tifffile

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "bomb.tif", np.zeros((200, 200), np.uint8), tile=(32, 32), compression="zlib")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert main(["predict", str(trained_run), str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    one_error_line(capsys, "bomb.tif", "too large")


# --- 2: every report and prediction file is written atomically -------------------------------

_WRITER = r"""
import sys
import numpy as np
from ssimae.core.metrics import RocCurve
from ssimae.reporting.tables import write_roc_csv

path, n = sys.argv[1], int(sys.argv[2])
curves = []
for k in (1, 2):
    fpr = np.linspace(0, 1, n) ** k
    curves.append(RocCurve(fpr=fpr, tpr=np.sqrt(fpr), thresholds=np.linspace(1, 0, n), auc=0.5, auc_fpr30=0.5))
i = 0
while True:
    write_roc_csv(path, curves[i % 2], max_rows=n)
    i += 1
    print("wrote", flush=True)
"""


def test_kill_during_a_report_write_leaves_a_complete_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import ssimae
    from ssimae.core.metrics import RocCurve
    from ssimae.reporting.tables import write_roc_csv

    n = 200_000
    complete = []
    for k in (1, 2):  # the two reports the writer alternates between, written here in full
        fpr = np.linspace(0, 1, n) ** k
        p = tmp_path / f"expected{k}.csv"
        curve = RocCurve(fpr=fpr, tpr=np.sqrt(fpr), thresholds=np.linspace(1, 0, n), auc=0.5, auc_fpr30=0.5)
        write_roc_csv(p, curve, max_rows=n)
        complete.append(p.read_bytes())
    target = tmp_path / "report" / "roc.csv"
    target.parent.mkdir()
    target.write_bytes(complete[0])
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(ssimae.__file__))}
    for delay in (0.05, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(n)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "wrote"  # mid-way through the next write
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert target.read_bytes() in complete  # the old complete file or the new one, never half


def test_full_disk_during_evaluate_keeps_the_earlier_report(tmp_path, trained_run, monkeypatch, capsys):
    import errno

    report = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "--out", str(report), "--quiet"]) == 0
    capsys.readouterr()
    before = snapshot(report)
    assert {"metrics.json", "roc.csv", "roc.png"} <= {p.name for p in report.iterdir()}

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)  # every write fails as on a full disk, after its data
    assert main(["evaluate", str(trained_run), "--out", str(report), "--quiet"]) == 2
    one_error_line(capsys, "No space left on device")
    assert snapshot(report) == before  # nothing earlier lost, no partial or 0-byte file, no temporaries


# --- 3: one run per folder; 8: temporaries of a killed writer are cleaned ------------------------

def test_second_training_into_a_busy_folder_is_refused(tmp_path, demo_root, capsys):
    import subprocess

    from ssimae.io.files import TMP_PREFIX
    from ssimae.io.folders import LOCK_NAME
    from ssimae.io.processes import process_tag

    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen(["sleep", "60"])  # a live process holding the folder
    tag = process_tag(other.pid)
    try:
        (out / LOCK_NAME).write_text(f"{tag}\n")
        assert main(["train", "--data", str(demo_root), "--out", str(out), *TINY]) == 2
        one_error_line(capsys, out, f"pid {other.pid}")
        assert {p.name for p in out.iterdir()} == {LOCK_NAME}  # nothing of the second run written
    finally:
        other.kill()
        other.wait()
    # the holder is gone (killed): its lock and its half-written checkpoint are cleaned up
    (out / f"{TMP_PREFIX}{tag}-model.pt").write_bytes(b"half a checkpoint")
    assert main(["train", "--data", str(demo_root), "--out", str(out), *TINY]) == 0
    assert {p.name for p in out.iterdir()} == {"model.pt", "config.json", "train_log.csv", "run_info.json"}


# --- 7: runs on your own data are evaluated as documented, from any working directory ----------

def test_generic_run_evaluates_from_another_directory(tmp_path, demo_root, monkeypatch, capsys):
    from ssimae.runs.checkpoint import load_checkpoint

    work = tmp_path / "work"
    shutil.copytree(demo_root / "train" / "good", work / "good")
    shutil.copytree(demo_root / "test", work / "new")
    shutil.copytree(demo_root / "ground_truth", work / "masks")
    monkeypatch.chdir(work)  # relative folders, as typed by a user
    assert main(["train", "--train-dir", "good", "--test-dir", "new", "--mask-dir", "masks", "--mask-suffix", "_mask",
                 "--out", "run", *TINY]) == 0
    data = load_checkpoint(work / "run")["settings"].train.data
    assert all(os.path.isabs(data[k]) for k in ("train_dir", "test_dir", "mask_dir"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", str(work / "run"), "--out", "report", "--quiet"]) == 0, capsys.readouterr().err
    assert (elsewhere / "report" / "metrics.json").exists()
    assert main(["train", "--out", str(work / "run"), "--resume", *TINY, "--epochs", "2"]) == 0  # its own data


# --- 8: predict beside its inputs, bad images, compare, warnings on stderr ---------------------

def test_predict_out_inside_its_input_folder(tmp_path, trained_run, capsys):
    inputs = _images(tmp_path / "in", 2)
    out = inputs / "predictions"
    for _ in range(2):  # the second run does not predict the first one's heat maps
        assert main(["predict", str(trained_run), str(inputs), "--out", str(out), "--quiet"]) == 0
        assert (out / "predictions.csv").read_text().count("\n") == 3  # header + 2 images
    assert not (out / "predictions").exists()
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(inputs), "--out", str(inputs), "--quiet"]) == 2
    one_error_line(capsys, "output folder")


def test_predict_skip_bad_goes_on_and_reports_the_skipped(tmp_path, trained_run, capsys):
    inputs = _images(tmp_path / "in", 3)
    (inputs / "001.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["predict", str(trained_run), str(inputs), "--out", str(out), "--quiet"]) == 2
    one_error_line(capsys, "001.png")
    assert main(["predict", str(trained_run), str(inputs), "--out", str(out), "--quiet", "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "001.png" in captured.err and "Traceback" not in captured.err
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["000.png", "002.png"]  # the images after the bad one too
    assert "001.png" in (out / "report.html").read_text()


def test_compare_without_models_says_so(tmp_path, demo_root, capsys):
    assert main(["compare", "--data", str(demo_root), "--models", "", "--out", str(tmp_path / "c"), *TINY]) == 2
    one_error_line(capsys, "--models")
    assert not (tmp_path / "c").exists()


def test_warnings_go_to_stderr(tmp_path, capsys):
    good = _images(tmp_path / "good", 4)
    Image.fromarray(np.full((160, 160), 128, np.uint8)).save(good / "flat.png")  # constant: one warning
    (good / "loop").symlink_to(".")
    assert main(["train", "--train-dir", str(good), "--out", str(tmp_path / "run"), *TINY]) == 0
    captured = capsys.readouterr()
    assert "flat.png" in captured.err and "loop" in captured.err
    assert "flat.png" not in captured.out and "warning:" not in captured.out, captured.out


# --- 5: a hand-edited checkpoint with wrong types ----------------------------------------------

@pytest.mark.parametrize("key,value", [("epoch", "x"), ("step", 1.5), ("finished", "yes"), ("rng", [1, 2])])
def test_hand_edited_checkpoint_with_wrong_types(tmp_path, trained_run, demo_root, capsys, key, value):
    import torch

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpt = torch.load(run / "model.pt", weights_only=True)
    ckpt[key] = value
    torch.save(ckpt, run / "model.pt")
    before = snapshot(run)
    assert main(["train", "--data", str(demo_root), "--out", str(run), "--resume", *TINY, "--epochs", "2"]) == 2
    one_error_line(capsys, "model.pt", key)
    assert main(["predict", str(run), str(demo_root / "test" / "good"), "--out", str(tmp_path / "p"), "--quiet"]) == 2
    one_error_line(capsys, "model.pt", key)
    assert snapshot(run) == before


# --- adversarial pass 3 -----------------------------------------------------------------------------

def test_options_of_another_model_are_refused(tmp_path, demo_root, capsys):
    """Cause 22: ``--model ssim --unet-width 4 --cell-sizes 2 --draem-width 4`` trained an
    SSIM-AE and ignored the three; now one line names them, before any folder is made.
    ``compare`` takes an option that one of its models has."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(demo_root), "--out", str(out), "--model", "ssim", "--unet-width", "4",
                 "--cell-sizes", "2", "--draem-width", "4", *TINY]) == 2
    err = one_error_line(capsys, "--cell-sizes", "--unet-width", "--draem-width", "ssim model")
    assert "--vae-samples" not in err and not out.exists()
    assert main(["compare", "--data", str(demo_root), "--out", str(out), "--models", "ssim,l2",
                 "--vae-samples", "2", *TINY]) == 2
    one_error_line(capsys, "--vae-samples", "the ssim model and the l2 model")
    assert not out.exists()


@pytest.mark.parametrize("value", ["a,b", "2,,8", "2;8"])
def test_a_malformed_cell_sizes_is_one_line(tmp_path, demo_root, capsys, value):
    """Cause 24: argparse printed the whole usage and "invalid _cell_sizes value"."""
    assert main(["train", "--data", str(demo_root), "--out", str(tmp_path / "r"), "--model", "inpaint",
                 "--cell-sizes", value, *TINY]) == 2
    err = one_error_line(capsys, "--cell-sizes must be whole numbers separated by commas, e.g. 2,8", repr(value))
    assert "usage" not in err and not (tmp_path / "r").exists()
