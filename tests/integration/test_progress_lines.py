"""Progress off a terminal (stderr captured, so not a tty): train, evaluate, predict and
calibrate write "done/total" lines with a rate (interval set to 0 s, so every step
writes one); ``compare`` trains and evaluates through the same two loops."""
import re
import shutil

import pytest

import ssimae.io.progress
from ssimae.cli.main import main
from tests.helpers.clicheck import TINY

LINE = re.compile(r"^(?P<desc>[^:]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \(\d+%\), [0-9.e+]+ (?P=unit)/s")


def lines(err: str) -> list[dict]:
    return [m.groupdict() for m in map(LINE.match, err.splitlines()) if m]


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(ssimae.io.progress, "LINE_EVERY_S", 0.0)


def test_predict_evaluate_calibrate_write_lines_off_a_terminal(trained_run, demo_root, tmp_path, capsys, every_step):
    n_test = len(list((demo_root / "test").rglob("*.png")))
    assert main(["predict", str(trained_run), str(demo_root / "test"), "--out", str(tmp_path / "p")]) == 0
    got = [d for d in lines(capsys.readouterr().err) if d["desc"] == "predicting"]
    assert [int(d["done"]) for d in got] == list(range(1, n_test + 1)) and {d["total"] for d in got} == {str(n_test)}
    assert main(["evaluate", str(trained_run), "--out", str(tmp_path / "e")]) == 0
    got = [d for d in lines(capsys.readouterr().err) if d["desc"] == "scoring test images"]
    assert int(got[-1]["done"]) == int(got[-1]["total"]) == n_test
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    n_good = len(list((demo_root / "train" / "good").glob("*.png")))
    assert main(["calibrate", str(run), "--good", str(demo_root / "train" / "good")]) == 0
    got = [d for d in lines(capsys.readouterr().err) if d["desc"].startswith("calibrating")]
    assert int(got[-1]["done"]) == int(got[-1]["total"]) == n_good


def test_train_writes_lines_off_a_terminal(demo_root, tmp_path, capsys, every_step):
    tiny = [a for a in TINY if a != "--quiet"]  # 24 patches in batches of 8
    assert main(["train", "--data", str(demo_root), "--model", "l2", "--out", str(tmp_path / "run"), *tiny]) == 0
    got = [d for d in lines(capsys.readouterr().err) if d["desc"] == "epoch 1/1"]
    assert [(d["done"], d["total"], d["unit"]) for d in got] == [("8", "24", "patches"), ("16", "24", "patches"),
                                                                  ("24", "24", "patches")]
