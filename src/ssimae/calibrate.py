"""The default threshold: chosen by a rule on defect-free validation images.

Rules (``InferenceSettings.threshold_rule``):

- ``max-region``: the smallest threshold at which no validation image keeps a defect
  region larger than ``min_defect_area`` pixels after the opening
  (:func:`ssimae.metrics.select_threshold`); with ``min_defect_area = 0`` the largest
  opened residual of any validation image.

A new rule is one entry of :data:`THRESHOLD_RULES`.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ssimae.detector import Detector
from ssimae.images import read_image
from ssimae.metrics import select_threshold
from ssimae.settings import InferenceSettings

RuleFn = Callable[[Sequence[np.ndarray], InferenceSettings], float]

THRESHOLD_RULES: dict[str, RuleFn] = {
    "max-region": lambda maps, s: select_threshold(maps, s.opening_diameter, s.min_defect_area),
}


def threshold_from_maps(maps: Sequence[np.ndarray], settings: InferenceSettings) -> float:
    """Threshold of ``settings.threshold_rule`` for defect-free residual maps (H_i, W_i)."""
    return float(THRESHOLD_RULES[settings.threshold_rule](maps, settings))


def calibrate(detector: Detector, images: Sequence[str | os.PathLike], progress: bool = True) -> float | None:
    """Threshold for ``detector`` from defect-free image files (None when there are none)."""
    if not images:
        return None
    maps = [detector.residual_map(read_image(p))
            for p in tqdm(images, desc="threshold on validation images", disable=not progress, leave=False)]
    return threshold_from_maps(maps, detector.settings)
