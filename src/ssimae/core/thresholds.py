"""Every threshold rule: how the default threshold is chosen on defect-free validation maps.

Rules (``InferenceSettings.threshold_rule``):

- ``max-region``: the smallest threshold at which no validation image keeps a defect
  region larger than ``min_defect_area`` pixels after the opening
  (:func:`select_threshold`); with ``min_defect_area = 0`` the largest
  opened residual of any validation image.
- ``fpr`` (the default of new runs, measured: docs/results/thresholds/): the smallest
  threshold at which at most a share ``target_fpr`` of all pixels of the validation images
  is marked defect after the opening (a per-pixel false-positive rate on defect-free
  images), :func:`fpr_threshold`.
- ``quantile``: the ``quantile`` of the validation images' scores (the largest value of
  each opened residual map, :func:`ssimae.core.metrics.image_scores`), so that about a share
  ``1 - quantile`` of defect-free images is flagged; ``quantile = 1`` equals
  ``max-region`` with ``min_defect_area = 0``. :func:`quantile_threshold`.

A new rule is one function here and one entry of :data:`THRESHOLD_RULES`. Each takes the
maps (H_i, W_i) and the settings object holding its options (any object with the attributes
``opening_diameter``, ``min_defect_area``, ``target_fpr``, ``quantile``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ssimae.core.morphology import OPENING_DIAMETER, gray_opening, largest_region_area
from ssimae.core.verdict import image_scores

RuleFn = Callable[[Sequence[np.ndarray], Any], float]


def select_threshold(val_residuals: Sequence[np.ndarray], diameter: int = OPENING_DIAMETER,
                     min_defect_area: int = 0) -> float:
    """Default threshold from defect-free validation maps.

    The smallest ``t`` such that, after thresholding (``residual > t``) and opening with
    ``disk(diameter)``, no validation image keeps an 8-connected defect region of more
    than ``min_defect_area`` pixels. With ``min_defect_area = 0`` this is the maximum of
    the opened maps.

    Exact: the largest region size is non-increasing in ``t`` and changes only at the
    distinct values of the opened map, so each image's answer is found by bisection
    over its sorted distinct values; images whose largest region at the current answer
    is already small enough are settled with one labelling.

    Args:
        val_residuals: (H_i, W_i) float maps of defect-free images.
        diameter: opening diameter (default 4; 0 = no opening).
        min_defect_area: largest region size (pixels) tolerated, >= 0.
    Returns:
        the threshold (a value of an opened map, or ``-inf`` if even marking every pixel
        leaves no region above ``min_defect_area``).
    """
    if min_defect_area < 0:
        raise ValueError(f"min_defect_area must be >= 0, got {min_defect_area}")
    if len(val_residuals) == 0:
        raise ValueError("no validation maps given")
    best = -np.inf
    for r in val_residuals:
        opened = gray_opening(r, diameter)
        if largest_region_area(opened > best) <= min_defect_area:
            continue  # this image's own answer is <= best
        values = np.unique(opened)
        # at the (A+1)-th largest pixel value at most A pixels are marked: condition holds
        cap = np.partition(opened.ravel(), opened.size - 1 - min_defect_area)[
            opened.size - 1 - min_defect_area]
        cand = values[(values > best) & (values <= cap)]
        lo, hi = 0, cand.size - 1  # condition fails below cand[lo]; holds at cand[hi]
        while lo < hi:
            mid = (lo + hi) // 2
            if largest_region_area(opened > cand[mid]) <= min_defect_area:
                hi = mid
            else:
                lo = mid + 1
        best = float(cand[hi])
    return float(best)


def fpr_threshold(maps: Sequence[np.ndarray], diameter: int, target_fpr: float) -> float:
    """Smallest ``t`` with ``sum_i #(opened_i > t) <= floor(target_fpr * N)``, N the pixel
    count of all maps together (each (H_i, W_i)), ``opened_i`` the gray-scale opening of map
    i. Returns a value of an opened map, or ``-inf`` when every pixel may be marked."""
    if len(maps) == 0:
        raise ValueError("no validation maps given")
    values = np.concatenate([gray_opening(np.asarray(m), diameter).ravel() for m in maps]).astype(np.float64)
    allowed = int(np.floor(target_fpr * values.size))
    if allowed >= values.size:
        return -np.inf
    # the (allowed+1)-th largest value: strictly above it lie at most ``allowed`` pixels
    return float(np.partition(values, values.size - 1 - allowed)[values.size - 1 - allowed])


def quantile_threshold(maps: Sequence[np.ndarray], diameter: int, quantile: float) -> float:
    """The ``quantile`` (linear interpolation, ``numpy.quantile``) of the image scores (the
    maximum of each opened map) of defect-free maps (H_i, W_i)."""
    if len(maps) == 0:
        raise ValueError("no validation maps given")
    scores = image_scores([gray_opening(np.asarray(m), diameter) for m in maps])
    return float(np.quantile(scores, quantile))


def order_image_threshold(scores: Sequence[float], max_fpr: float) -> float:
    """The image threshold for a false-reject rate, by order: the smallest ``t`` among the
    ``scores`` of n defect-free validation images with ``#{s > t} <= floor(max_fpr * n)``, i.e.
    the (floor(max_fpr * n) + 1)-th largest score. With fewer than 1 / max_fpr images that is
    the largest score (no validation image is rejected), which a new defect-free image from
    the same distribution exceeds with probability 1 / (n + 1): the rate can only be held to
    :func:`supportable_rate` (n)."""
    values = np.sort(_scores(scores))[::-1]
    return float(values[int(np.floor(max_fpr * values.size))])


def gaussian_image_threshold(scores: Sequence[float], max_fpr: float) -> float:
    """The image threshold for a false-reject rate from a fitted tail: mean + z * std of the
    ``scores`` (std with n - 1), z the standard normal's (1 - max_fpr) quantile; never below
    the largest score. Extrapolates past the largest of a few scores instead of stopping at
    it; holds the rate when the scores are about normal (checked on the dev sets:
    docs/results/suite/). Needs 2 or more scores (1 score: that score)."""
    from scipy.stats import norm

    values = _scores(scores)
    if values.size < 2 or max_fpr == 0:
        return float(values.max())
    fitted = values.mean() + norm.ppf(1 - max_fpr) * values.std(ddof=1)
    return float(max(fitted, values.max()))


IMAGE_THRESHOLD_RULES = {"order": order_image_threshold, "gaussian": gaussian_image_threshold}


def image_threshold(scores: Sequence[float], max_fpr: float, rule: str = "order") -> float:
    """The image threshold of ``rule`` (:data:`IMAGE_THRESHOLD_RULES`) on the image scores of
    defect-free validation images, to reject at most a share ``max_fpr`` of such images."""
    if not 0 <= max_fpr < 1:
        raise ValueError(f"max_fpr must be in [0, 1), got {max_fpr}")
    return IMAGE_THRESHOLD_RULES[rule](scores, max_fpr)


def supportable_rate(n: int) -> float:
    """The smallest false-reject rate that n defect-free validation images can show to hold:
    1 / (n + 1), the chance that a new image from their distribution scores above all n
    (exchangeability; the order rule's guarantee at its largest score)."""
    return 1.0 / (n + 1)


def _scores(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no validation scores given")
    return values


THRESHOLD_RULES: dict[str, RuleFn] = {
    "max-region": lambda maps, s: select_threshold(maps, s.opening_diameter, s.min_defect_area),
    "fpr": lambda maps, s: fpr_threshold(maps, s.opening_diameter, s.target_fpr),
    "quantile": lambda maps, s: quantile_threshold(maps, s.opening_diameter, s.quantile),
}


def threshold_from_maps(maps: Sequence[np.ndarray], settings) -> float:
    """Threshold of ``settings.threshold_rule`` for defect-free residual maps (H_i, W_i)."""
    return float(THRESHOLD_RULES[settings.threshold_rule](maps, settings))
