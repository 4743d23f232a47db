"""Per-image verdicts (#11): regions, scores, the Python API and predict's CSV/JSONL files."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.measure import label, regionprops
from tests.helpers.floats import flippable, maps_close

from ssimae.cli.main import main
from ssimae.io.images import read_image
from ssimae.core.morphology import binary_opening, gray_opening
from ssimae.models.network import AutoEncoder
from ssimae.runs.settings import InferenceSettings
from ssimae.core.verdict import find_regions


def reference_regions(mask):
    """(x, y, width, height, area) of each 8-connected region, from skimage's regionprops."""
    props = regionprops(label(mask, connectivity=2))
    return sorted((p.bbox[1], p.bbox[0], p.bbox[3] - p.bbox[1], p.bbox[2] - p.bbox[0], int(p.area)) for p in props)


def as_tuples(regions):
    return sorted((r.x, r.y, r.width, r.height, r.area) for r in regions)


def test_regions_match_skimage_regionprops():
    rng = np.random.default_rng(0)
    for density in (0.0, 0.05, 0.3, 0.6):
        mask = rng.random((40, 57)) < density
        assert as_tuples(find_regions(mask)) == reference_regions(mask)


def test_import_detector_from_package():
    import ssimae
    from ssimae import Detector

    assert Detector is ssimae.inference.detector.Detector


def tiny_detector(threshold=0.3):
    from ssimae import Detector

    torch.manual_seed(0)
    return Detector(AutoEncoder(8), "ssim", InferenceSettings(threshold=threshold))


def test_predict_score_mask_and_regions(tmp_path):
    det = tiny_detector()
    rng = np.random.default_rng(3)
    img = rng.random((150, 170)).astype(np.float32)
    p = det.predict(img)
    res = det.residual_map(img)
    assert np.array_equal(p.residual, res)
    # reference: binary opening of the thresholded map (the definition of the mask)
    assert np.array_equal(p.mask, binary_opening(res > 0.3, 4))
    assert p.defective == bool(p.mask.any())
    assert p.score <= res.max()
    assert as_tuples(p.regions) == reference_regions(p.mask)
    assert p.defect_area == int(p.mask.sum()) == sum(r.area for r in p.regions)
    # a path gives the same as the array read from it
    path = tmp_path / "x.png"
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
    q, r = det.predict(path), det.predict(read_image(path))
    assert q.score == r.score and np.array_equal(q.mask, r.mask)
    # score > t  <=>  the mask at t is not empty, on both sides of the score
    assert det.predict(img, threshold=p.score).mask.sum() == 0
    assert det.predict(img, threshold=float(np.nextafter(np.float32(p.score), -np.inf))).mask.any()


@pytest.mark.kernels  # one batch of three images against one image at a time: tests/helpers/floats.py
def test_predict_many_batches_and_matches_one_by_one():
    det = tiny_detector()
    rng = np.random.default_rng(4)
    imgs = [rng.random(s).astype(np.float32) for s in [(130, 140), (60, 90), (200, 128)]]
    calls = []
    net = det.network
    det.network.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    many = det.predict_many(imgs)
    assert len(calls) == 1  # all patches of the three images in one batch (<= 64 patches)
    for img, p in zip(imgs, many):
        one = det.predict(img)
        # another batch composition: the network's sums round differently (floats.py); the
        # masks are equal except where the opened map lies within that rounding of the threshold
        maps_close(p.residual, one.residual)
        flips = flippable(gray_opening(one.residual, det.opening_diameter), det.threshold)
        assert p.mask.shape == img.shape and np.array_equal(p.mask[~flips], one.mask[~flips])
    assert net is det.network


def test_predict_writes_verdicts(trained_run, demo_root, tmp_path, capsys):
    out = tmp_path / "pred"
    test_dir = demo_root / "test"
    assert main(["predict", str(trained_run), str(test_dir), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    lines = [json.loads(x) for x in open(out / "predictions.jsonl")]
    images = sorted(p.relative_to(test_dir).as_posix() for p in test_dir.rglob("*.png"))
    assert sorted(r["path"] for r in rows) == images == sorted(x["path"] for x in lines)
    n_bad = 0
    for r, j in zip(rows, lines):
        assert r["path"] == j["path"] and float(r["score"]) == j["score"] and float(r["threshold"]) == j["threshold"]
        # the verdict: the image score above the run's image threshold (the pixel threshold draws the mask)
        assert j["image_threshold"] is not None and float(r["image_threshold"]) == j["image_threshold"]
        assert (r["defective"] == "yes") == j["defective"] == (j["score"] > j["image_threshold"])
        assert r["label"] == j["label"] == j["path"].split("/")[0]
        assert r["outcome"] == j["outcome"] == {(False, True): "false reject", (True, False): "escape",
                                                 (False, False): "pass", (True, True): "found"}[
            (j["label"] != "good", j["defective"])]
        mask = np.array(Image.open(out / (j["path"][:-4] + "_mask.png"))) > 0
        assert j["defect_area"] == int(r["defect_area"]) == int(mask.sum())
        regions = json.loads(r["regions"])
        assert regions == j["regions"] and int(r["n_regions"]) == len(regions)
        assert sorted(tuple(g.values()) for g in regions) == reference_regions(mask)
        n_bad += j["defective"]
    text = capsys.readouterr().out
    assert f"{n_bad} of {len(rows)} images defective" in text and "stored: fpr rule" in text
