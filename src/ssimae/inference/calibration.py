"""Calibration on defect-free images, on either engine (torch :class:`Detector` or
:class:`OnnxDetector`): the threshold of the run's rule (:mod:`ssimae.core.thresholds`) and the
validation statistics of the residual maps. Returns values; the caller puts them into new
settings (``dataclasses.replace``), nothing here changes a detector.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ssimae.core.residual import get_residual
from ssimae.core.morphology import gray_opening
from ssimae.core.thresholds import image_threshold, threshold_from_maps
from ssimae.core.verdict import image_scores
from ssimae.inference.scorer import Scorer, smooth_map
from ssimae.io.progress import progress as progress_display

STATS_RESIDUALS = ("ssim", "l2")  # whose validation statistics every run stores


@dataclass(frozen=True)
class Calibration:
    """What calibration found: the threshold of the run's rule on its own residual (None
    without images), {residual: [mean, std]} of the STATS_RESIDUALS maps (unsmoothed) and the
    image threshold (:func:`ssimae.core.thresholds.image_threshold`)."""

    threshold: float | None
    residual_stats: dict = field(default_factory=dict)
    image_threshold: float | None = None  # at the run's image_fpr, on the image scores of the same maps
    images: int = 0  # how many defect-free images the thresholds rest on


def calibrate(detector: Scorer, images: Sequence[str | os.PathLike], progress: bool = True) -> Calibration:
    """Calibrate ``detector`` on defect-free image files: the statistics of the
    STATS_RESIDUALS maps and the threshold of its own residual (computed with those
    statistics, for the standardised residuals). No images: ``Calibration(None, {})``."""
    if not images:
        return Calibration(None, {})
    own = detector.default_residual
    extra = (own,) if not get_residual(own).needs_stats else ()
    stats, collected = residual_statistics(detector, images, extra, progress)
    detector = detector.with_settings(residual_stats=stats)
    s = detector.settings
    if own in collected and (s.smooth == 0 or not s.preprocess.resizes):
        # no resize: smoothing the unsmoothed maps is what the detector does, without a second pass
        own_maps = [smooth_map(m, s.smooth) for m in collected[own]]
    else:
        own_maps = [detector.residual_map(detector.read(p)) for p in images]
    scores = image_scores([gray_opening(m, s.opening_diameter) for m in own_maps], s.image_score)
    return Calibration(threshold_from_maps(own_maps, s), stats,
                       image_threshold(scores, s.image_fpr, s.image_threshold_rule), len(scores))


def residual_statistics(detector: Scorer, images: Sequence[str | os.PathLike], extra: tuple[str, ...] = (),
                        progress: bool = True) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """({residual: [mean, std]} of the STATS_RESIDUALS maps (unsmoothed) of defect-free
    ``images``, those maps and the ``extra`` ones by name)."""
    names = tuple(dict.fromkeys(STATS_RESIDUALS + tuple(extra)))
    raw = detector.with_settings(smooth=0.0)
    read = detector.read
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for p in progress_display(images, desc="calibrating on defect-free images", enabled=progress):
        _, maps = raw.analyze_many(read(p), names)
        for n in names:
            collected[n].append(maps[n])
    return {n: pooled_stats(collected[n]) for n in STATS_RESIDUALS}, collected


def pooled_stats(maps: Sequence[np.ndarray]) -> list[float]:
    """[mean, standard deviation] of all pixels of all maps (of any sizes)."""
    values = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    return [float(values.mean()), float(values.std())]
