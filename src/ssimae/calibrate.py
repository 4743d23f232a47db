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
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ssimae.detector import Detector
from ssimae.images import read_image
from ssimae.metrics import select_threshold
from ssimae.residual import get_residual
from ssimae.settings import InferenceSettings

RuleFn = Callable[[Sequence[np.ndarray], InferenceSettings], float]

THRESHOLD_RULES: dict[str, RuleFn] = {
    "max-region": lambda maps, s: select_threshold(maps, s.opening_diameter, s.min_defect_area),
}


def threshold_from_maps(maps: Sequence[np.ndarray], settings: InferenceSettings) -> float:
    """Threshold of ``settings.threshold_rule`` for defect-free residual maps (H_i, W_i)."""
    return float(THRESHOLD_RULES[settings.threshold_rule](maps, settings))


STATS_RESIDUALS = ("ssim", "l2")  # whose validation statistics every run stores


def calibrate(detector: Detector, images: Sequence[str | os.PathLike], progress: bool = True) -> float | None:
    """Calibrate ``detector`` on defect-free image files: store the statistics of the
    STATS_RESIDUALS maps in its settings (``residual_stats``, unsmoothed), then return the
    threshold of its own residual (None when there are no images)."""
    if not images:
        return None
    s = detector.settings
    own = detector.default_residual
    extra = (own,) if not get_residual(own).needs_stats else ()
    collected = residual_statistics(detector, images, extra, progress)
    if own in collected and s.smooth == 0:
        own_maps = collected[own]
    else:
        own_maps = [detector.residual_map(read_image(p)) for p in images]
    return threshold_from_maps(own_maps, s)


def residual_statistics(detector: Detector, images: Sequence[str | os.PathLike], extra: tuple[str, ...] = (),
                        progress: bool = True) -> dict[str, list[np.ndarray]]:
    """Store [mean, std] of the STATS_RESIDUALS maps (unsmoothed) of defect-free ``images`` in
    ``detector.settings.residual_stats``; returns those maps and the ``extra`` ones by name."""
    names = tuple(dict.fromkeys(STATS_RESIDUALS + tuple(extra)))
    s = detector.settings
    raw = Detector(detector.network, detector.model, replace(s, smooth=0.0), detector.params, detector.device)
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for p in tqdm(images, desc="calibrating on validation images", disable=not progress, leave=False):
        _, maps = raw.analyze_many(read_image(p), names)
        for n in names:
            collected[n].append(maps[n])
    s.residual_stats = {n: _pooled_stats(collected[n]) for n in STATS_RESIDUALS}
    return collected


def _pooled_stats(maps: Sequence[np.ndarray]) -> list[float]:
    """[mean, standard deviation] of all pixels of all maps (of any sizes)."""
    values = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    return [float(values.mean()), float(values.std())]
