"""``ssimae fuse``: two runs' standardised maps added, against the maps each member gives on
its own (the definition), the thresholds against their rules recomputed, and the fused run
through predict, evaluate and the ONNX export."""
import json

import numpy as np
import pytest

from ssimae.cli.main import main
from ssimae.core.morphology import gray_opening
from ssimae.core.thresholds import image_threshold, threshold_from_maps
from ssimae.data.datasets import load_dataset
from ssimae.errors import SsimaeError
from ssimae.inference.detector import Detector
from ssimae.inference.calibration import pooled_stats
from ssimae.inference.fusion import FUSION_FILE, FusedDetector, fuse_maps
from ssimae.inference.test_set import validation_images
from ssimae.runs.checkpoint import load_run
from tests.helpers.clicheck import TINY
from tests.helpers.floats import RESIDUAL_RTOL


def fused_tolerance(det: FusedDetector, path) -> float:
    """How far two evaluations of ``det``'s fused map of ``path`` may differ when each member's
    map differs within RESIDUAL_RTOL (relative, floor RESIDUAL_RTOL; tests/helpers/floats.py):
    another batch composition, engine, process or CPU. The fused map divides each member's by
    its std, so the bound is the sum of those bounds over the stds; the opening and the maximum
    are 1-Lipschitz in the max norm, so the image score obeys it too."""
    member_max = [np.abs(m.residual_map(m.read(path))).max() for m in det.members]
    return sum(RESIDUAL_RTOL * max(1.0, mx) / std for mx, (_, std) in zip(member_max, det.stats))


def test_fuse_maps_is_the_standardised_sum():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 7)), 3 * rng.random((5, 7)) + 1
    stats = [[0.4, 0.2], [2.0, 0.5]]
    np.testing.assert_allclose(fuse_maps([a, b], stats), (a - 0.4) / 0.2 + (b - 2.0) / 0.5, rtol=1e-6)
    values = np.concatenate([a.ravel(), b.ravel()])
    np.testing.assert_allclose(pooled_stats([a, b]), [values.mean(), values.std()])
    with pytest.raises(ValueError):
        fuse_maps([a, b[:4]], stats)
    with pytest.raises(SsimaeError):
        FusedDetector([object()], [[0, 1]])


@pytest.fixture(scope="module")
def fused(trained_run, demo_root, tmp_path_factory):
    """(fused run folder, the two member run folders): the tiny SSIM-AE and a tiny l2-AE."""
    tmp = tmp_path_factory.mktemp("fusion")
    l2 = tmp / "l2"
    assert main(["train", "--data", str(demo_root), "--model", "l2", "--out", str(l2), *TINY, "--seed", "3"]) == 0
    out = tmp / "fused"
    assert main(["fuse", str(trained_run), str(l2), "--out", str(out), "--quiet"]) == 0
    return out, (trained_run, l2)


def test_fused_maps_and_thresholds_follow_their_definitions(fused, demo_root):
    out, members = fused
    info = json.loads((out / FUSION_FILE).read_text())
    dets = [Detector.load(m) for m in members]
    loaded = load_run(members[0])
    data = dict(loaded.settings.train.data)
    val = validation_images(load_dataset(data.pop("root"), **data, log=None, progress=False), loaded.settings)
    assert val and info["image_threshold_images"] == len(val)
    own = [[d.residual_map(d.read(p)) for p in val] for d in dets]
    for k, maps in enumerate(own):  # each member's [mean, std] over its own maps of the validation images
        values = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
        np.testing.assert_allclose(info["stats"][k], [values.mean(), values.std()], rtol=1e-9)
    by_hand = [sum((own[k][i].astype(np.float64) - info["stats"][k][0]) / info["stats"][k][1] for k in range(2))
               for i in range(len(val))]
    det = Detector.load(out)
    assert isinstance(det, FusedDetector) and det.default_residual == "fusion"
    for p, ref in zip(val, by_hand):
        np.testing.assert_allclose(det.residual_map(det.read(p)), ref, rtol=1e-5, atol=1e-5)
    s = det.settings
    assert s.threshold == pytest.approx(threshold_from_maps([m.astype(np.float32) for m in by_hand], s), rel=1e-6)
    scores = [gray_opening(m.astype(np.float32), s.opening_diameter).max() for m in by_hand]
    assert s.image_threshold == pytest.approx(image_threshold(scores, s.image_fpr, s.image_threshold_rule), rel=1e-6)
    assert s.image_score == "max"


def test_fused_run_predicts_evaluates_and_exports(fused, demo_root, tmp_path):
    out, _ = fused
    good = sorted((demo_root / "test" / "good").iterdir())
    det = Detector.load(out)
    assert main(["predict", str(out), *map(str, good), "--out", str(tmp_path / "p"), "--quiet"]) in (0, 1)
    rows = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    for row, f in zip(rows, good):  # predict scores its files two at a time: another batch composition
        p, tol = det.predict(str(f)), fused_tolerance(det, f)
        assert abs(row["score"] - p.score) <= tol
        if abs(p.score - det.settings.image_threshold) > tol:  # else the verdict may flip by rounding
            assert row["defective"] == p.defective
        assert row["image_threshold"] == pytest.approx(det.settings.image_threshold)

    assert main(["evaluate", str(out), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["model"] == "fusion" and metrics["residual"] == "fusion" and 0 <= metrics["pixel_roc_auc"] <= 1

    assert main(["export", str(out), "--out", str(tmp_path / "ex")]) == 0
    from ssimae.runtime import OnnxDetector

    onnx = OnnxDetector.load(tmp_path / "ex")
    assert isinstance(onnx, FusedDetector) and onnx.engine == "onnx"
    for f in good:  # each member's ONNX map is within RESIDUAL_RTOL of its torch map
        ref, got = det.residual_map(det.read(f)), onnx.residual_map(onnx.read(f))
        assert np.abs(got.astype(np.float64) - ref).max() <= fused_tolerance(det, f)


def test_fuse_refuses_what_it_cannot_fuse(fused, trained_run, tmp_path, capsys):
    out, _ = fused
    assert main(["fuse", str(trained_run), "--out", str(tmp_path / "one")]) != 0
    assert "two or more runs" in capsys.readouterr().err
    assert main(["fuse", str(out), str(trained_run), "--out", str(tmp_path / "nested")]) != 0
    err = capsys.readouterr().err
    assert "fused run already" in err and len(err.strip().splitlines()) == 1
    assert main(["fuse", str(trained_run), str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) != 0
    assert "missing" in capsys.readouterr().err
    assert main(["predict", str(out), str(trained_run), "--smooth", "8", "--quiet"]) != 0
    assert "members' own smooth" in capsys.readouterr().err
    assert main(["predict", str(out), str(trained_run), "--out", str(tmp_path / "ray"), "--ray", "--quiet"]) != 0
    assert "this fused run has several" in capsys.readouterr().err  # refused before Ray starts
    assert main(["calibrate", str(out), "--good", str(trained_run)]) != 0
    assert "set by ssimae fuse" in capsys.readouterr().err
    (out / "broken").mkdir(exist_ok=True)
    (out / "broken" / FUSION_FILE).write_text("{}")
    assert main(["predict", str(out / "broken"), str(trained_run), "--quiet"]) != 0
    assert "not a fusion file" in capsys.readouterr().err


def test_server_scores_a_fused_run_as_predict_does(fused, demo_root):
    from tests.integration.test_serve import cli_server, post, stop

    out, _ = fused
    det = Detector.load(out)
    f = sorted((demo_root / "test" / "good").iterdir())[0]
    proc, url = cli_server(["-m", "ssimae", "serve", str(out)])
    try:
        got = post(url, f.read_bytes(), name=f.name)
        assert got.status_code == 200, got.text
        row = got.json()
        assert row["model"] == "fusion" and row["residual"] == "fusion"
        assert abs(row["score"] - det.predict(str(f)).score) <= fused_tolerance(det, f)  # another process
    finally:
        stop(proc)
