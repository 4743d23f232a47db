"""An --out folder holds one result: predicting into the folder of an earlier predict
replaces that result whole (its tables, report, thumbnails and per-image pictures removed
first; what ssimae did not write is kept). Reference: the set of files a fresh predict of
the same image writes into an empty folder."""
import json
import shutil

from ssimae.cli.main import main


def files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_predict_into_an_earlier_result_replaces_it_whole(trained_run, demo_root, tmp_path, capsys):
    test, one = demo_root / "test", sorted((demo_root / "test" / "good").glob("*.png"))[0]
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    assert main(["predict", str(trained_run), str(one), "--out", str(fresh), "--quiet"]) == 0
    assert main(["predict", str(trained_run), str(test), "--out", str(out), "--save-raw", "--quiet"]) == 0
    assert len(files(out)) > len(files(fresh)) + 10
    mine = {"notes.txt": "the user's", "crack/mine_mask.png": "a user's file with an output-like name"}
    for name, text in mine.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text(text)
    outside = tmp_path / "victim_heatmap.png"  # named by a tampered row: outside the folder, kept
    for suffix in ("_heatmap.png", "_mask.png", "_overlay.png"):
        shutil.copy(fresh / f"{one.stem}{suffix}", tmp_path / f"victim{suffix}")
    with open(out / "predictions.jsonl", "a") as f:
        f.write(json.dumps({"path": "../victim.png"}) + "\n")
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(one), "--out", str(out), "--quiet"]) == 0
    assert files(out) == files(fresh) | set(mine)
    assert all((out / n).read_text() == t for n, t in mine.items()) and outside.is_file()
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [one.name]


def test_pictures_of_a_result_without_tables_are_removed(trained_run, demo_root, tmp_path):
    """A predict killed before its tables leaves pictures only: each heat map with its mask and
    overlay is recognised as ssimae's."""
    test, one = demo_root / "test", sorted((demo_root / "test" / "good").glob("*.png"))[0]
    fresh, out = tmp_path / "fresh", tmp_path / "out"
    assert main(["predict", str(trained_run), str(one), "--out", str(fresh), "--quiet"]) == 0
    assert main(["predict", str(trained_run), str(test), "--out", str(out), "--quiet"]) == 0
    for name in ("predictions.jsonl", "predictions.csv", "report.html"):
        (out / name).unlink()
    assert main(["predict", str(trained_run), str(one), "--out", str(out), "--quiet"]) == 0
    assert files(out) == files(fresh)
