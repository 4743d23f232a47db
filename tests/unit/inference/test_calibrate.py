"""Threshold rules against brute-force definitions, and `ssimae calibrate` (#11)."""
import json
import shutil

import numpy as np
import pytest

from ssimae.core.thresholds import THRESHOLD_RULES, fpr_threshold, quantile_threshold, threshold_from_maps
from ssimae.runs.checkpoint import load_checkpoint
from ssimae.cli.main import main
from ssimae.data.datasets import load_dataset
from ssimae.inference.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.inference.test_set import validation_images
from ssimae.io.images import read_image
from ssimae.core.morphology import binary_opening, gray_opening
from ssimae.runs.settings import InferenceSettings, RunSettings
from tests.helpers.clicheck import one_error_line


def random_maps(seed=0):
    rng = np.random.default_rng(seed)
    # coarse values so that ties occur
    return [np.round(rng.random(s) * 20) / 20 for s in [(12, 15), (9, 9), (20, 7)]]


def brute_marked(maps, t, d):
    """Pixels marked at t: binary opening of each thresholded map (the mask's definition)."""
    return sum(int(binary_opening(m > t, d).sum()) for m in maps)


@pytest.mark.parametrize("d", [0, 2, 4])
@pytest.mark.parametrize("target", [0.001, 0.05, 0.3, 0.9])
def test_fpr_rule_is_the_smallest_threshold_within_the_target(d, target):
    maps = random_maps()
    n = sum(m.size for m in maps)
    t = fpr_threshold(maps, d, target)
    candidates = sorted(set(np.concatenate([m.ravel() for m in maps])) | {-np.inf})
    ok = [c for c in candidates if brute_marked(maps, c, d) / n <= target]
    assert t == min(ok)


def brute_score(m, d):
    """Largest value v with a non-empty binary opening of (m >= v): the image score."""
    return max(v for v in np.unique(m) if binary_opening(m >= v, d).any())


@pytest.mark.parametrize("q", [0.0, 0.3, 0.95, 1.0])
def test_quantile_rule_matches_numpy_quantile_of_brute_force_scores(q):
    maps = random_maps(1)
    ref = np.quantile([brute_score(m, 4) for m in maps], q)
    assert quantile_threshold(maps, 4, q) == pytest.approx(ref, abs=1e-12)
    if q == 1.0:  # the largest score: the max-region rule with no region allowed
        assert threshold_from_maps(maps, InferenceSettings(threshold_rule="max-region")) == ref


def test_new_runs_use_the_measured_rule_and_old_ones_keep_theirs():
    # fpr at 1e-3: the best pixel IoU in docs/results/thresholds/ (README, "Which threshold rule")
    s = InferenceSettings()
    assert (s.threshold_rule, s.target_fpr) == ("fpr", 1e-3)
    old = InferenceSettings(threshold_rule="max-region", threshold=0.5)
    from ssimae.runs.settings import RunSettings

    assert RunSettings.from_dict(RunSettings(inference=old).to_dict()).inference.threshold_rule == "max-region"


def test_every_rule_is_registered_and_bad_options_are_refused():
    assert {"max-region", "fpr", "quantile"} <= set(THRESHOLD_RULES)
    for bad in ({"target_fpr": 0.0}, {"target_fpr": 1.0}, {"target_fpr": float("nan")}, {"quantile": -0.1},
                {"quantile": 1.5}, {"threshold_rule": "median"}):
        with pytest.raises(SsimaeError):
            InferenceSettings(**bad)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def own_validation_files(run, demo_root):
    settings = load_checkpoint(run)["settings"]
    return validation_images(load_dataset(demo_root, progress=False, log=lambda *_: None), settings)


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
def test_calibrate_round_trips_and_keeps_history(run_copy, demo_root, capsys):
    before = load_checkpoint(run_copy)
    t0 = before["settings"].inference.threshold
    good = demo_root / "train" / "good"
    assert main(["calibrate", str(run_copy), "--good", str(good), "--threshold-rule", "fpr",
                 "--target-fpr", "0.01", "--quiet"]) == 0
    after = load_checkpoint(run_copy)
    inf = after["settings"].inference
    det = Detector.load(run_copy)
    # exact by design here and below: calibrate computes the maps one image at a time, as
    # residual_map does (the same patches in the same network batch, this process's kernels)
    maps = [det.residual_map(read_image(p)) for p in sorted(good.iterdir())]
    assert inf.threshold == fpr_threshold(maps, inf.opening_diameter, 0.01)
    assert (inf.threshold_rule, inf.target_fpr) == ("fpr", 0.01)
    [entry] = inf.threshold_history
    assert entry["previous_threshold"] == t0 and entry["previous"]["threshold_rule"] == "fpr"
    assert entry["previous"]["target_fpr"] == 1e-3
    assert entry["n_images"] == len(maps)
    # weights, optimizer state and RNG state are untouched; config.json says the same
    assert all((after["model"][k] == v).all() for k, v in before["model"].items())
    assert (after["rng"] == before["rng"]).all() and after["epoch"] == before["epoch"]
    assert json.loads((run_copy / "config.json").read_text())["inference"]["threshold"] == inf.threshold
    assert "threshold_history" in capsys.readouterr().out
    # back to the original rule on the run's own validation images: the original threshold
    files = [str(p) for p in own_validation_files(run_copy, demo_root)]
    good_args = [a for f in files for a in ("--good", f)]
    assert main(["calibrate", str(run_copy), *good_args, "--target-fpr", "1e-3", "--quiet"]) == 0
    inf = load_checkpoint(run_copy)["settings"].inference
    assert inf.threshold == t0 and len(inf.threshold_history) == 2
    assert main(["calibrate", str(run_copy), *good_args, "--threshold-rule", "max-region", "--quiet"]) == 0
    maps = [Detector.load(run_copy).residual_map(read_image(f)) for f in files]
    assert load_checkpoint(run_copy)["settings"].inference.threshold == max(float(m.max()) for m in
                                                                            [gray_opening(m, 4) for m in maps])


def test_predict_says_which_threshold(run_copy, demo_root, tmp_path, capsys):
    good = demo_root / "train" / "good"
    one = next((demo_root / "test").rglob("*.png"))
    assert main(["predict", str(run_copy), str(one), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert "stored: fpr rule, chosen at training" in capsys.readouterr().out
    assert main(["calibrate", str(run_copy), "--good", str(good), "--threshold-rule", "quantile", "--quiet"]) == 0
    assert main(["predict", str(run_copy), str(one), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert f"stored: quantile rule, recalibrated" in capsys.readouterr().out
    assert main(["predict", str(run_copy), str(one), "--out", str(tmp_path / "c"), "--threshold", "0.5"]) == 0
    said = capsys.readouterr().out
    assert "image score above the image threshold " in said and "masks and regions at the pixel threshold 0.5" in said
    assert "(given with --threshold)" in said


def bad_good_folder(tmp_path, kind):
    d = tmp_path / kind
    d.mkdir()
    if kind == "text":
        (d / "notes.txt").write_text("not an image")
    elif kind == "corrupt":
        (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return d


@pytest.mark.parametrize("args", [["--target-fpr", "1.5"], ["--target-fpr", "0"], ["--quantile", "2"],
                                  ["--min-defect-area", "-1"], ["--good-kind", "empty"], ["--good-kind", "text"],
                                  ["--good-kind", "corrupt"]])
def test_bad_input_leaves_the_threshold_untouched(run_copy, demo_root, tmp_path, capsys, args):
    good = demo_root / "train" / "good"
    if args[0] == "--good-kind":
        good, args = bad_good_folder(tmp_path, args[1]), []
    before = (run_copy / "model.pt").read_bytes(), (run_copy / "config.json").read_bytes()
    assert main(["calibrate", str(run_copy), "--good", str(good), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssimae: error:") and "\n" not in err
    assert before == ((run_copy / "model.pt").read_bytes(), (run_copy / "config.json").read_bytes())


def test_unwritable_run_folder_is_one_line_and_changes_nothing(run_copy, demo_root, capsys, monkeypatch):
    import ssimae.runs.checkpoint

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ssimae.runs.checkpoint, "atomic_write_bytes", refuse)  # also what root meets on a read-only mount
    before = (run_copy / "model.pt").read_bytes()
    assert main(["calibrate", str(run_copy), "--good", str(demo_root / "train" / "good"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Permission denied" in err and "unchanged" in err and "\n" not in err
    assert (run_copy / "model.pt").read_bytes() == before


def test_pixel_iou_matches_sklearn_jaccard():
    from sklearn.metrics import jaccard_score

    from ssimae.core.metrics import pixel_iou

    rng = np.random.default_rng(5)
    pred = [rng.random(s) < 0.3 for s in [(10, 12), (7, 5)]]
    truth = [rng.random(p.shape) < 0.2 for p in pred]
    ref = jaccard_score(np.concatenate([t.ravel() for t in truth]), np.concatenate([p.ravel() for p in pred]))
    assert pixel_iou(pred, truth) == pytest.approx(ref, abs=1e-12)
    assert np.isnan(pixel_iou([np.zeros((3, 3), bool)], [np.zeros((3, 3), bool)]))


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
@pytest.mark.parametrize("smooth", [0.0, 2.0])
def test_calibrate_threshold_equals_the_detectors_own_maps(trained_run, demo_root, smooth):
    """calibrate (one pass over the images) gives the threshold of the maps the detector
    itself computes, smoothing included."""
    from dataclasses import replace

    from ssimae.inference.calibration import calibrate

    det = Detector.load(trained_run)
    det.settings = replace(det.settings, smooth=smooth)
    images = sorted((demo_root / "train" / "good").glob("*.png"))[:2]
    # exact by design: calibrate's maps are one image at a time, as residual_map's (same batch, same kernels)
    expected = threshold_from_maps([det.residual_map(read_image(p)) for p in images], det.settings)
    assert calibrate(det, images, progress=False).threshold == expected


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
@pytest.mark.parametrize("fpr, score", [(0.01, "max"), (0.25, "top1%")])
def test_calibrate_image_threshold_against_a_brute_force_count(run_copy, demo_root, fpr, score):
    """ssimae calibrate --image-threshold-rule order stores the image threshold of --image-fpr:
    counted over the detector's own maps of the good images, at most floor(fpr * n) of them
    score above it, and none of their scores below it would do; predict's verdicts then follow it."""
    from ssimae.core.verdict import image_score

    good = demo_root / "train" / "good"
    assert main(["calibrate", str(run_copy), "--good", str(good), "--image-fpr", str(fpr), "--image-score", score,
                 "--image-threshold-rule", "order", "--quiet"]) == 0
    inf = load_checkpoint(run_copy)["settings"].inference
    assert (inf.image_fpr, inf.image_score) == (fpr, score)
    det = Detector.load(run_copy)
    # exact by design: calibrate's maps are one image at a time, as residual_map's (same batch, same kernels)
    scores = [image_score(gray_opening(det.residual_map(read_image(p)), inf.opening_diameter), score)
              for p in sorted(good.iterdir())]
    allowed = int(np.floor(fpr * len(scores)))
    t = inf.image_threshold
    assert sum(s > t for s in scores) <= allowed
    assert all(sum(s > c for s in scores) > allowed for c in scores if c < t)
    assert inf.threshold_history[-1]["previous_image_threshold"] is not None
    for p in sorted(good.iterdir())[:3]:
        pred = det.predict(read_image(p))
        assert pred.image_threshold == t and pred.defective == (pred.score > t)


def test_calibrate_says_both_thresholds_and_undo_restores_them(run_copy, demo_root, capsys):
    """The output names both thresholds old -> new (which decides, which draws) and how to
    undo; --undo restores the run's inference settings exactly as they were (reference: the
    settings read before calibrating), twice in a row, then says there is nothing to undo."""
    original = load_checkpoint(run_copy)["settings"]
    o = original.inference
    good = demo_root / "train" / "good"
    capsys.readouterr()
    assert main(["calibrate", str(run_copy), "--good", str(good), "--target-fpr", "0.01", "--image-fpr", "0.5",
                 "--quiet"]) == 0
    once = load_checkpoint(run_copy)["settings"]
    n = once.inference
    assert (n.threshold, n.image_threshold) != (o.threshold, o.image_threshold)
    said = capsys.readouterr().out
    assert (f"image threshold {o.image_threshold:.6g} -> {n.image_threshold:.6g} (decides the verdict), "
            f"pixel threshold {o.threshold:.6g} -> {n.threshold:.6g} (draws the masks)") in said
    assert f"undo with ssimae calibrate {run_copy} --undo" in said
    assert main(["calibrate", str(run_copy), "--good", str(good), "--threshold-rule", "quantile", "--quiet"]) == 0
    assert main(["calibrate", str(run_copy), "--undo"]) == 0
    assert load_checkpoint(run_copy)["settings"] == once
    assert f"-> {n.threshold:.6g} (draws the masks): restored" in capsys.readouterr().out
    assert main(["calibrate", str(run_copy), "--undo"]) == 0
    assert load_checkpoint(run_copy)["settings"] == original
    assert RunSettings.from_dict(json.loads((run_copy / "config.json").read_text())) == original
    assert main(["calibrate", str(run_copy), "--undo"]) == 2
    one_error_line(capsys, "nothing to undo")
    assert main(["calibrate", str(run_copy)]) == 2
    one_error_line(capsys, "--good DIR", "--undo")


def test_the_image_threshold_states_its_images_and_follows_its_rule(run_copy, demo_root, trained_run):
    """A new run records how many defect-free images its image threshold rests on; calibrate
    with --image-threshold-rule order sets the order statistic of those images' scores
    (recomputed here from their maps, :func:`image_threshold` being checked against its
    definition in tests/unit/core/test_image_verdicts.py)."""
    from ssimae.core.thresholds import image_threshold
    from ssimae.core.verdict import image_scores
    from tests.helpers.floats import RESIDUAL_RTOL

    files = [str(p) for p in own_validation_files(trained_run, demo_root)]
    inf = load_checkpoint(trained_run)["settings"].inference
    assert inf.image_threshold_images == len(files) >= 1 and inf.image_threshold_rule == "gaussian"
    good_args = [a for f in files for a in ("--good", f)]
    assert main(["calibrate", str(run_copy), *good_args, "--image-threshold-rule", "order", "--quiet"]) == 0
    inf = load_checkpoint(run_copy)["settings"].inference
    det = Detector.load(run_copy)
    scores = image_scores([gray_opening(det.residual_map(read_image(f)), inf.opening_diameter) for f in files],
                          inf.image_score)
    assert inf.image_threshold_rule == "order" and inf.image_threshold_images == len(files)
    assert inf.image_threshold == pytest.approx(image_threshold(scores, inf.image_fpr, "order"), rel=RESIDUAL_RTOL)
