"""Model selection from good images alone: the proxy's anomalies against the pixels they
change, the proxy's AUCs against scikit-learn on the same maps, the ranking against a sort."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ssimae.core.morphology import gray_opening
from ssimae.core.verdict import image_score
from ssimae.data.synthetic import proxy_anomaly, scratch, stain
from ssimae.inference.detector import Detector
from ssimae.inference.selection import proxy_images, proxy_rank, proxy_scores


def test_stain_shifts_exactly_the_masked_pixels_by_one_constant():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = (rng.random((40, 56)) * 0.4 + 0.3).astype(np.float32)  # no clipping at +-0.3
        out, mask = stain(img, rng)
        assert mask.any() and np.array_equal(out[~mask], img[~mask])
        delta = (out[mask].astype(np.float64) - img[mask])
        assert 0.1 - 1e-6 <= abs(delta.mean()) <= 0.3 + 1e-6 and np.ptp(delta) < 1e-6  # float32 rounding


def test_scratch_is_a_thin_stroke_of_one_value():
    rng = np.random.default_rng(1)
    for _ in range(20):
        img = rng.random((64, 64)).astype(np.float32)
        out, mask = scratch(img, rng)
        assert np.array_equal(out[~mask], img[~mask]) and np.unique(out[mask]).size == 1
        assert mask.sum() <= 3 * 0.6 * np.hypot(64, 64) + 8  # width <= 3 px along at most 0.6 of the diagonal


def test_colour_images_get_one_region_in_every_channel():
    rng = np.random.default_rng(2)
    img = rng.random((32, 32, 3)).astype(np.float32)
    for _ in range(10):
        out, mask = proxy_anomaly(img, rng)
        assert out.shape == img.shape and mask.shape == (32, 32)
        assert np.array_equal(out[~mask], img[~mask])


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
def test_proxy_scores_are_the_auc_of_the_run_on_the_pasted_anomalies(trained_run, demo_root):
    """Against scikit-learn on the same maps: the pixel AUC pooled over the opened maps, the
    image AUC of the run's image scores (clean images against anomalous ones)."""
    det = Detector.load(trained_run, "cpu")
    files = sorted((demo_root / "train" / "good").glob("*.png"))[:3]
    got = proxy_scores(det, files, seed=5)
    images, masks, types = proxy_images([det.settings.preprocess.read(f) for f in files], seed=5)
    # exact by design: proxy_scores computes the maps one image at a time, as here
    opened = [gray_opening(det.residual_map(im), det.opening_diameter) for im in images]
    pixel = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([o.ravel() for o in opened]))
    image = roc_auc_score([t != "good" for t in types], [image_score(o, det.settings.image_score) for o in opened])
    assert got["images"] == 3 and len(types) == 9
    assert got["pixel_auc"] == pytest.approx(pixel, abs=1e-9) and got["image_auc"] == pytest.approx(image, abs=1e-9)
    assert got["proxy"] == pytest.approx((pixel + image) / 2, abs=1e-9)
    assert proxy_scores(det, files, seed=5) == got  # the same pasted set for every candidate


def test_proxy_rank_is_a_sort_by_proxy_with_ties_to_the_earlier():
    scores = {"ssim": {"proxy": 0.8}, "inpaint": {"proxy": 0.9}, "draem": {"proxy": 0.8}}
    assert proxy_rank(scores) == ["inpaint", "ssim", "draem"]
