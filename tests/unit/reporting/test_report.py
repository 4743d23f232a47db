"""report.html (#11): parsed (links resolve, one row per image, numbers match the JSON files)
and rendered in headless Chromium (not blank; paging shows one page of rows)."""
import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.helpers.htmlpage import Page, parse
from ssimae.cli.main import main
from ssimae.reporting.html import PAGE_SIZE, _fmt, write_report


def test_predict_report_has_a_row_per_image(trained_run, demo_root, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(demo_root / "test"), "--out", str(out), "--quiet"]) == 0
    page = parse(out)
    verdicts = {j["path"]: j for j in map(json.loads, open(out / "predictions.jsonl"))}
    rows = page.tables["images"]
    assert len(rows) == len(verdicts) == len(list((demo_root / "test").rglob("*.png")))
    for cells, attrs in zip(rows, page.row_attrs["images"]):
        # path, type (the subfolder), score, score / verdict threshold, verdict, defect area, thumbnails
        v = verdicts[cells[0]]
        assert cells[1] == cells[0].split("/")[0]
        verdict = "defective" if v["defective"] else "no defect"
        shown = f" ({v['outcome']})" if v["outcome"] in ("false reject", "escape") else ""
        assert cells[2] == _fmt(v["score"]) and cells[3] == _fmt(v["score_norm"]) and cells[4] == verdict + shown
        assert (float(cells[3]) > 1) == v["defective"] or abs(v["score_norm"] - 1) < 1e-3
        # regions of a passed image are not defects
        area = str(v["defect_area"]) + (", below the verdict threshold" if v["defect_area"] and not v["defective"] else "")
        assert cells[5] == area
        assert ("escape" in attrs["class"].split()) == (v["outcome"] == "escape")  # shown in the warning colour
        base = v["path"].rsplit(".", 1)[0]
        assert {f"{base}_heatmap.png", f"{base}_overlay.png"} <= set(page.links)  # thumbnails open the full files
    assert any(v["outcome"] == "escape" for v in verdicts.values())  # the case shown is there
    assert sum(link.startswith("thumbs/") for link in page.links) == 4 * len(rows) + 1  # 4 per row and the colour bar
    inputs = [link for link in page.links if link.endswith(".png") and "/test/" in link]
    assert sorted((out / i).resolve() for i in inputs) == sorted((demo_root / "test").rglob("*.png"))
    folders = {p.parent.name for p in (demo_root / "test").rglob("*.png")}
    assert {a["data-type"] for a in page.row_attrs["images"]} == folders  # filterable by subfolder


def test_evaluate_report_matches_metrics_json(trained_run, demo_root, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", str(trained_run), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    page = parse(out)
    table = page.tables["metrics"]
    assert table[0] == ["all", str(metrics["n_images"]), _fmt(metrics["pixel_roc_auc"]),
                        _fmt(metrics["pixel_roc_auc_fpr30"]), _fmt(metrics["pro_auc_fpr30"]),
                        _fmt(metrics["image_roc_auc"])]
    for row in table[1:]:
        t = metrics["per_type"][row[0]]
        assert row[1:4] == [str(t["n_images"]), _fmt(t["pixel_roc_auc"]), _fmt(t["pixel_roc_auc_fpr30"])]
    assert len(table) == 1 + len(metrics["per_type"])
    assert len(page.tables["images"]) == metrics["n_images"]
    assert {"roc.png", "pro.png"} <= set(page.links)
    types = [a["data-type"] for a in page.row_attrs["images"]]
    n_gt = sum(link.endswith("_ground-truth.png") for link in page.links)
    assert n_gt == len(types) and "good" in types and len(set(types)) > 1


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser (Debian's chromium package; .ci/run installs it when it can)")


def run_browser(args):
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def fake_report(tmp_path, n):
    png = tmp_path / "thumbs" / "x.png"
    png.parent.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(png)
    images = [{"path": f"img{i:04d}.png", "score": float(rng.random()), "defective": bool(i % 3 == 0),
               "defect_area": i, "type": ["good", "crack"][i % 2], "thumbs": {"input": "thumbs/x.png"}}
              for i in range(n)]
    return write_report(tmp_path, title="test", metrics=[{"a": 0.5}], metric_columns=["a"], images=images)


def test_report_renders_in_headless_chromium(tmp_path):
    path = fake_report(tmp_path, 7)
    shot = tmp_path / "shot.png"
    r = run_browser(["--window-size=1000,700", f"--screenshot={shot}", path.as_uri()])
    assert shot.is_file(), r.stderr[-500:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (700, 1000) and pixels.std() > 10  # text, tables and images, not a blank page


def test_large_reports_are_paged(tmp_path):
    n = 2 * PAGE_SIZE + 7
    path = fake_report(tmp_path, n)
    r = run_browser(["--dump-dom", path.as_uri()])
    page = Page(r.stdout)
    attrs = page.row_attrs["images"]
    assert len(attrs) == n
    visible = [a for a in attrs if "display: none" not in a.get("style", "")]
    assert len(visible) == PAGE_SIZE
    scores = [float(a["data-score"]) for a in visible]
    assert scores == sorted(scores, reverse=True)  # sorted by score, highest first
    assert scores[0] == max(float(a["data-score"]) for a in attrs)
