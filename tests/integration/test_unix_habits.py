"""``ssimae predict`` as a Unix tool: verdicts as JSON lines on stdout (without ``--out``
nothing is written), ``--json`` beside ``--out``, ``--fail-on-defect`` as the exit status,
and a mistake on the command line as one line instead of the usage block. The reference for
every JSON line is the predictions.jsonl that ``predict --out`` writes for the same images."""
import json
import os

import pytest

from ssimae.cli.main import main
from tests.helpers.clicheck import one_error_line


def images(demo_root):
    """Two test images of the demo: a good one and a defective one (by its folder)."""
    good = sorted((demo_root / "test" / "good").glob("*.png"))[0]
    bad = sorted(p for p in (demo_root / "test").rglob("*.png") if p.parent.name != "good")[0]
    return [good, bad]


def jsonl(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(trained_run, demo_root, tmp_path_factory):
    """predictions.jsonl of ``predict --out`` on the two images."""
    out = tmp_path_factory.mktemp("ref") / "pred"
    assert main(["predict", str(trained_run), *map(str, images(demo_root)), "--out", str(out), "--quiet"]) == 0
    return jsonl(out)


def test_without_out_each_verdict_is_one_json_line_on_stdout_and_nothing_is_written(
        trained_run, demo_root, reference, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["predict", str(trained_run), *map(str, images(demo_root)), "--quiet"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rows == reference and len(rows) == 2
    assert "images defective" in captured.err  # the summary goes to stderr
    assert os.listdir(tmp_path) == []


def test_json_with_out_prints_the_rows_it_writes(trained_run, demo_root, reference, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), *map(str, images(demo_root)), "--out", str(out), "--json",
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == jsonl(out) == reference


@pytest.fixture(scope="module")
def strict_run(trained_run, tmp_path_factory):
    """The tiny run with its image threshold at 0: every image is defective."""
    from dataclasses import replace

    from ssimae.runs.checkpoint import load_run, save_run

    run = load_run(trained_run)
    path = tmp_path_factory.mktemp("strict") / "model.pt"
    save_run(path, replace(run.settings, inference=replace(run.settings.inference, image_threshold=0.0)), run.state)
    return path


@pytest.mark.parametrize("which", ["trained", "strict"])
def test_fail_on_defect_exits_1_exactly_when_an_image_is_defective(trained_run, strict_run, demo_root, which,
                                                                  capsys):
    run = {"trained": trained_run, "strict": strict_run}[which]
    argv = ["predict", str(run), *map(str, images(demo_root)), "--quiet"]
    status = main(argv + ["--fail-on-defect"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and status == (1 if any(r["defective"] for r in rows) else 0)
    assert main(argv) == 0  # without the flag, a defect is not a failure
    if which == "strict":  # the test can fail: this run gives status 1
        assert status == 1


def test_an_error_stays_status_2_with_fail_on_defect(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "none"), str(tmp_path), "--fail-on-defect", "--quiet"]) == 2
    one_error_line(capsys, "none")


@pytest.mark.parametrize("argv, needles", [
    (["train", "--model", "nope", "--out", "x"], ["--model", "'ssim'", "'inpaint'"]),
    (["predict", "RUN", "a.png", "--engine", "tf"], ["--engine", "'torch'", "'onnx'"]),
    (["evaluate", "RUN", "--out", "x", "--residual", "nope"], ["--residual", "'ssim'"]),
    (["nope"], ["'train'", "'predict'"]),
    (["train", "--epochs", "many", "--out", "x"], ["--epochs", "many"]),
])
def test_a_command_line_mistake_is_one_line_with_the_valid_values(argv, needles, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    one_error_line(capsys, *needles)
    assert "usage:" not in capsys.readouterr().out
