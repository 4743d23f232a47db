"""Tests of ssimae.core.metrics against brute-force definitions (loop over thresholds, open,
count / label) and scikit-learn."""
import csv
import json
import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from sklearn.metrics import roc_auc_score, roc_curve

from ssimae.core.metrics import (RocCurve, evaluate_maps, image_roc_auc, json_summary, partial_auc, pixel_roc,
                                 pro_auc, pro_curve, roc_with_opening)
from ssimae.core.thresholds import select_threshold
from ssimae.core.verdict import image_scores
from ssimae.reporting.tables import write_roc_csv
from tests.helpers.reference import brute_opening
from ssimae.core.morphology import disk, gray_opening

EIGHT = np.ones((3, 3), bool)


def random_set(seed, shapes=((9, 11), (12, 7), (10, 10)), levels=8):
    """Quantised maps (many ties) of different sizes and blobby masks."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for shape in shapes:
        maps.append(rng.integers(0, levels, shape).astype(np.float32))
        masks.append(ndi.gaussian_filter(rng.random(shape), 1.5) > 0.55)
    masks[0][0, 0] = True  # at least one defect pixel
    masks[-1][-1, -1] = False
    return maps, masks


def brute_roc_at(maps, masks, t, d):
    """(FPR, TPR) of 'threshold at t, open each image, pool counts'."""
    tp = fp = pos = neg = 0
    for r, m in zip(maps, masks):
        seg = brute_opening(r > t, d)
        tp += np.sum(seg & m)
        fp += np.sum(seg & ~m)
        pos += m.sum()
        neg += (~m).sum()
    return fp / neg, tp / pos


@pytest.mark.parametrize("d", [0, 3, 4])
def test_roc_with_opening_matches_brute_force(d):
    maps, masks = random_set(d)
    curve = roc_with_opening(maps, masks, diameter=d)
    # every kept point is what its threshold produces
    for t, f, p in zip(curve.thresholds, curve.fpr, curve.tpr):
        assert brute_roc_at(maps, masks, t, d) == pytest.approx((f, p), abs=1e-12)
    # every threshold of the raw maps lands on the full (undropped) curve
    full = pixel_roc([gray_opening(r, d) for r in maps], masks, drop_intermediate=False)
    for t in np.r_[np.unique(np.concatenate([m.ravel() for m in maps])) - 0.5, 99.0]:
        k = np.argmax(full.thresholds <= t)  # largest curve threshold <= t
        assert brute_roc_at(maps, masks, t, d) == pytest.approx((full.fpr[k], full.tpr[k]))
    assert curve.fpr[0] == curve.tpr[0] == 0 and curve.fpr[-1] == curve.tpr[-1] == 1
    assert curve.thresholds[-1] == -np.inf
    assert curve.auc == pytest.approx(full.auc, abs=1e-12)
    assert curve.auc_fpr30 == pytest.approx(full.auc_fpr30, abs=1e-12)


def test_pixel_roc_agrees_with_sklearn():
    rng = np.random.default_rng(11)
    maps = [rng.random((40, 30 + i)).astype(np.float32) for i in range(4)]
    masks = [ndi.gaussian_filter(rng.random(m.shape), 2) > 0.52 for m in maps]
    maps = [m + 0.3 * k for m, k in zip(maps, masks)]
    s = np.concatenate([m.ravel() for m in maps])
    y = np.concatenate([m.ravel() for m in masks])
    full = pixel_roc(maps, masks, drop_intermediate=False)
    f_ref, t_ref, th_ref = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(full.fpr, f_ref, atol=1e-12)
    np.testing.assert_allclose(full.tpr, t_ref, atol=1e-12)
    np.testing.assert_array_equal(full.thresholds[:-1], th_ref[1:])  # '>' vs '>='
    dropped = pixel_roc(maps, masks)
    assert dropped.fpr.size < full.fpr.size
    kept = np.searchsorted(-full.thresholds, -dropped.thresholds)  # a subset of points
    np.testing.assert_array_equal(full.thresholds[kept], dropped.thresholds)
    np.testing.assert_array_equal(full.fpr[kept], dropped.fpr)
    assert dropped.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_partial_auc_hand_computed():
    fpr, tpr = np.array([0, 0.2, 0.5, 1.0]), np.array([0, 0.6, 0.9, 1.0])
    # tpr(0.3) = 0.7; area = 0.2*0.3 + 0.1*0.65 = 0.125; / 0.3
    assert partial_auc(fpr, tpr, 0.3) == pytest.approx(0.125 / 0.3)
    assert partial_auc([0, 0, 1], [0, 1, 1]) == pytest.approx(1.0)
    assert partial_auc([0, 1], [0, 1], 0.3) == pytest.approx(0.15)  # not McClish's 0.5
    # vertical step exactly at the limit
    assert partial_auc([0, 0.3, 0.3, 1], [0, 0.3, 0.8, 1], 0.3) == pytest.approx(0.15)
    assert partial_auc(fpr, tpr, 1.0) == pytest.approx(np.trapezoid(tpr, fpr))
    with pytest.raises(ValueError):
        partial_auc(fpr, tpr, 0.0)


def brute_pro(opened, masks):
    """PRO(t) and FPR(t) for t = every distinct value, descending ('>= t')."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndi.label(m, structure=EIGHT)
        regions += [(i, lab == k) for k in range(1, n + 1)]
    neg = sum((~m).sum() for m in masks)
    fprs, pros = [], []
    for t in np.unique(np.concatenate([o.ravel() for o in opened]))[::-1]:
        pros.append(np.mean([(opened[i][r] >= t).sum() / r.sum() for i, r in regions]))
        fprs.append(sum(((o >= t) & ~m).sum() for o, m in zip(opened, masks)) / neg)
    return np.array(fprs), np.array(pros)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pro_matches_brute_force(seed):
    maps, masks = random_set(seed, levels=12)
    opened = [gray_opening(r, 3) for r in maps]
    fpr, pro = pro_curve(opened, masks, drop_intermediate=False)
    f_ref, p_ref = brute_pro(opened, masks)
    np.testing.assert_allclose(fpr[1:], f_ref, atol=1e-12)
    np.testing.assert_allclose(pro[1:], p_ref, atol=1e-12)
    assert fpr[0] == pro[0] == 0
    f2, p2 = pro_curve(opened, masks)
    assert f2.size <= fpr.size
    area_ref = partial_auc(np.r_[0, f_ref], np.r_[0, p_ref], 0.3)
    assert pro_auc(f2, p2) == pytest.approx(area_ref, abs=1e-12)


def test_image_level():
    rng = np.random.default_rng(5)
    maps = [rng.random((8, 9)) for _ in range(6)]
    np.testing.assert_array_equal(image_scores(maps), [m.max() for m in maps])
    y = [0, 1, 0, 1, 1, 0]
    s = image_scores(maps)
    assert image_roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(image_roc_auc(s, [1] * 6))


def test_evaluate_maps_structure_and_values(tmp_path):
    rng = np.random.default_rng(2)
    types = ["good", "cut", "good", "hole", "cut"]
    maps, masks = [], []
    for i, t in enumerate(types):
        shape = (30 + 2 * i, 28)
        m = np.zeros(shape, bool)
        if t != "good":
            m[5 + i:12 + i, 6:14] = True
        maps.append(ndi.gaussian_filter(rng.random(shape), 1) + 0.2 * m)
        masks.append(m)
    res = evaluate_maps(maps, masks, types, diameter=4)
    assert set(res) == {"pixel_roc_auc", "pixel_roc_auc_fpr30", "pro_auc_fpr30",
                        "image_roc_auc", "n_images", "per_type", "roc", "pro"}
    assert res["n_images"] == 5
    assert set(res["per_type"]) == {"cut", "hole"}
    assert res["per_type"]["cut"]["n_images"] == 2 and res["per_type"]["hole"]["n_images"] == 1
    whole = roc_with_opening(maps, masks, 4)
    assert res["pixel_roc_auc"] == pytest.approx(whole.auc)
    assert res["pixel_roc_auc_fpr30"] == pytest.approx(whole.auc_fpr30)
    assert isinstance(res["roc"], RocCurve)
    sel = [0, 1, 2, 4]  # cut + all good
    cut = roc_with_opening([maps[i] for i in sel], [masks[i] for i in sel], 4)
    assert res["per_type"]["cut"]["pixel_roc_auc"] == pytest.approx(cut.auc)
    opened = [gray_opening(r, 4) for r in maps]
    assert res["pro_auc_fpr30"] == pytest.approx(pro_auc(*pro_curve(opened, masks)))
    assert all(np.array_equal(a, b) for a, b in zip(res["pro"], pro_curve(opened, masks)))
    ref_img = roc_auc_score([t != "good" for t in types], [o.max() for o in opened])
    assert res["image_roc_auc"] == pytest.approx(ref_img)
    summary = json_summary(res)
    assert "roc" not in summary and "pro" not in summary and summary["per_type"]["hole"]["n_images"] == 1
    json.dumps(summary, allow_nan=False)
    bad = [m.copy() for m in masks]
    bad[0][0, 0] = True
    with pytest.raises(ValueError):
        evaluate_maps(maps, bad, types)


def test_evaluate_maps_all_good_gives_nan():
    maps = [np.random.default_rng(0).random((10, 10))]
    res = evaluate_maps(maps, [np.zeros((10, 10), bool)], ["good"])
    assert math.isnan(res["pixel_roc_auc"]) and math.isnan(res["pro_auc_fpr30"])
    assert json_summary(res)["pixel_roc_auc"] is None


def test_write_roc_csv_roundtrip_and_decimation(tmp_path):
    maps, masks = random_set(4)
    curve = roc_with_opening(maps, masks, 0)
    n = write_roc_csv(tmp_path / "small.csv", curve)
    with open(tmp_path / "small.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["threshold", "fpr", "tpr"] and n == len(rows) - 1 == curve.fpr.size
    np.testing.assert_array_equal([float(r[0]) for r in rows[1:]], curve.thresholds)
    # large synthetic curve: a concave curve with 100 000 points
    x = np.linspace(0, 1, 100_000)
    big = RocCurve(x, np.sqrt(x), np.linspace(1, 0, x.size), 0.0, 0.0)
    n = write_roc_csv(tmp_path / "big.csv", big, max_rows=2000)
    data = np.loadtxt(tmp_path / "big.csv", delimiter=",", skiprows=1)
    assert n == data.shape[0] <= 2000
    assert data[0, 1] == 0 and data[-1, 1] == 1 and data[-1, 2] == 1
    # every dropped point is within one grid step of the kept polyline
    assert np.max(np.abs(np.interp(x, data[:, 1], data[:, 2]) - np.sqrt(x))) < 2.1e-3


def brute_select(maps, d, area):
    """Smallest t over all candidate values (and -inf) with every region <= area."""
    cands = np.r_[-np.inf, np.unique(np.concatenate([m.ravel() for m in maps]))]
    for t in cands:
        ok = True
        for r in maps:
            lab, n = ndi.label(brute_opening(r > t, d), structure=EIGHT)
            if n and np.bincount(lab.ravel())[1:].max() > area:
                ok = False
                break
        if ok:
            return t
    raise AssertionError("unreachable")


@pytest.mark.parametrize("d,area", [(0, 0), (4, 0), (0, 3), (3, 2), (4, 5), (2, 10)])
def test_select_threshold_matches_brute_force(d, area):
    rng = np.random.default_rng(100 + d + area)
    maps = [ndi.gaussian_filter(rng.random((11, 12)), 1.0) for _ in range(3)]
    maps = [np.round(m * 40) / 40 for m in maps]  # ties
    t = select_threshold(maps, diameter=d, min_defect_area=area)
    assert t == brute_select(maps, d, area)
    if area == 0:
        assert t == max(gray_opening(m, d).max() for m in maps)


def test_select_threshold_degenerate():
    maps = [np.arange(12.0).reshape(3, 4)]
    assert select_threshold(maps, diameter=0, min_defect_area=12) == -np.inf
    assert select_threshold(maps, diameter=0, min_defect_area=11) == 0.0
    with pytest.raises(ValueError):
        select_threshold(maps, min_defect_area=-1)
