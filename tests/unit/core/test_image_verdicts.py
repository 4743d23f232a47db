"""Image verdicts with their own threshold: the image threshold against a brute-force count over
the validation images, the image scores against their definitions, the verdict semantics."""
import numpy as np
import pytest

from ssimae.core.thresholds import image_threshold
from ssimae.core.verdict import IMAGE_SCORES, image_score, top_mean, verdict
from ssimae.reporting.tables import outcome, summary


@pytest.mark.parametrize("n, fpr", [(4, 0.01), (10, 0.1), (10, 0.25), (37, 0.05), (200, 0.01), (5, 0.0)])
def test_image_threshold_is_the_smallest_score_that_rejects_at_most_the_allowed_share(n, fpr):
    rng = np.random.default_rng(n)
    scores = np.round(rng.random(n), 2)  # ties included
    t = image_threshold(scores, fpr)
    allowed = int(np.floor(fpr * n))
    # brute force over every candidate: the rejects at t are within the allowance ...
    assert sum(s > t for s in scores) <= allowed
    # ... and no smaller score would be
    for c in scores:
        if c < t:
            assert sum(s > c for s in scores) > allowed
    assert t in scores


def test_few_validation_images_give_their_largest_score():
    assert image_threshold([0.3, 0.9, 0.5], 0.01) == 0.9


def test_image_threshold_refuses_bad_input():
    with pytest.raises(ValueError):
        image_threshold([], 0.01)
    with pytest.raises(ValueError):
        image_threshold([1.0], 1.0)


def test_top_mean_is_the_mean_of_the_largest_share_by_sorting():
    a = np.random.default_rng(0).random((37, 53))
    k = int(0.01 * a.size)
    assert top_mean(a) == pytest.approx(np.sort(a.ravel())[::-1][:k].mean(), abs=1e-12)
    assert top_mean(np.array([[3.0]])) == 3.0  # at least one value
    assert image_score(a, "max") == a.max() and image_score(a, "top1%") == top_mean(a)
    assert set(IMAGE_SCORES) == {"max", "top1%"}


def test_verdict_uses_the_image_threshold_and_the_pixel_threshold_draws_the_mask():
    opened = np.zeros((20, 20))
    opened[5:8, 5:8] = 1.0  # a small bright spot above the pixel threshold
    p = verdict(opened, opened, 0.5, image_threshold=2.0)
    assert p.mask.sum() == 9 and not p.defective  # mask drawn, image passes: score 1 <= 2
    p = verdict(opened, opened, 0.5, image_threshold=0.9)
    assert p.defective and p.to_dict("x.png")["image_threshold"] == 0.9
    p = verdict(opened, opened, 0.5)  # no image threshold (runs calibrated before): mask decides
    assert p.defective and p.to_dict("x.png")["image_threshold"] is None
    p = verdict(opened, opened, 0.5, image_threshold=0.05, rule="top1%")
    assert p.score == pytest.approx(top_mean(opened)) and p.defective  # top 4 of 400 pixels: mean 1


def test_rows_say_which_threshold_decides_on_one_scale():
    """score_norm = score / the threshold that decides (the image one, else the pixel one), so
    1.0 is the cut on every run; regions of a passed image are below the verdict threshold."""
    opened = np.zeros((20, 20))
    opened[5:8, 5:8] = 1.0
    passed = verdict(opened, opened, 0.5, image_threshold=2.0).to_dict("x.png")
    assert passed["score_norm"] == 0.5 and not passed["defective"]
    assert passed["n_regions"] == 1 and passed["regions_are"] == "below the verdict threshold"
    found = verdict(opened, opened, 0.5, image_threshold=0.8).to_dict("x.png")
    assert found["score_norm"] == 1.0 / 0.8 and found["defective"] and found["regions_are"] == "defects"
    old = verdict(opened, opened, 0.5).to_dict("x.png")  # no image threshold: the pixel one decides
    assert old["score_norm"] == 2.0 and old["defective"]
    for t in np.linspace(0.01, 3, 31):  # above 1 exactly when defective
        p = verdict(opened, opened, 0.5, image_threshold=float(t))
        assert (p.score_norm > 1) == p.defective


def test_outcomes_and_summary_count_false_rejects_and_escapes():
    recs = [{"defective": True, "label": "good"}, {"defective": False, "label": "good"},
            {"defective": False, "label": "cut"}, {"defective": True, "label": "cut"}, {"defective": True, "label": None}]
    assert [outcome(r["label"], r["defective"]) for r in recs] == ["false reject", "pass", "escape", "found", None]
    assert summary(recs) == ("3 of 5 images defective; false rejects: 1 of 2 good images, "
                             "escapes: 1 of 2 defective images")
    assert summary(recs[-1:]) == "1 of 1 image defective"


def test_gaussian_image_threshold_against_its_definition():
    """mean + z * sample std (statistics module's NormalDist and stdev: an independent
    reference), never below the largest score."""
    import statistics

    from ssimae.core.thresholds import gaussian_image_threshold

    scores = [0.31, 0.35, 0.29, 0.4, 0.33, 0.36]
    ref = statistics.mean(scores) + statistics.NormalDist().inv_cdf(0.99) * statistics.stdev(scores)
    assert image_threshold(scores, 0.01, "gaussian") == pytest.approx(ref, rel=1e-12)
    assert gaussian_image_threshold(scores, 0.3) == max(scores)  # the fit lies below the largest score
    assert gaussian_image_threshold([0.5], 0.01) == 0.5


def test_the_rules_false_reject_rates_on_normal_scores():
    """On n = 20 defect-free scores drawn from N(0, 1) (2,000 draws), the rate at which new
    defect-free images are rejected (exactly: the normal tail above the threshold): the order
    rule at 1 % rejects 1 / (n + 1) on average (the max of n exchangeable scores; its Monte
    Carlo error here is 0.001), the fitted tail stays near the asked 1 % (above it by the
    uncertainty of the fitted mean and std, Student's predictive inflation: about 1.5 %)."""
    from scipy.stats import norm

    from ssimae.core.thresholds import supportable_rate

    rng = np.random.default_rng(0)
    n = 20
    order, fitted = [], []
    for _ in range(2000):
        s = rng.standard_normal(n)
        order.append(norm.sf(image_threshold(s, 0.01, "order")))
        fitted.append(norm.sf(image_threshold(s, 0.01, "gaussian")))
    assert np.mean(order) == pytest.approx(supportable_rate(n), abs=0.005)
    assert 0.008 < np.mean(fitted) < 0.02
    assert supportable_rate(n) == 1 / 21


def test_unknown_image_threshold_rule_is_one_line():
    from ssimae.errors import SsimaeError
    from ssimae.runs.inference_settings import InferenceSettings

    with pytest.raises(SsimaeError, match="--image-threshold-rule"):
        InferenceSettings(image_threshold_rule="best")
