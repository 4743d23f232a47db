"""The default threshold: chosen by a rule on defect-free validation images.

Rules (``InferenceSettings.threshold_rule``):

- ``max-region``: the smallest threshold at which no validation image keeps a defect
  region larger than ``min_defect_area`` pixels after the opening
  (:func:`ssimae.metrics.select_threshold`); with ``min_defect_area = 0`` the largest
  opened residual of any validation image.
- ``fpr`` (the default of new runs, measured: docs/results/thresholds/): the smallest
  threshold at which at most a share ``target_fpr`` of all pixels of the validation images
  is marked defect after the opening (a per-pixel false-positive rate on defect-free
  images), :func:`fpr_threshold`.
- ``quantile``: the ``quantile`` of the validation images' scores (the largest value of
  each opened residual map, :func:`ssimae.metrics.image_scores`), so that about a share
  ``1 - quantile`` of defect-free images is flagged; ``quantile = 1`` equals
  ``max-region`` with ``min_defect_area = 0``. :func:`quantile_threshold`.

A new rule is one entry of :data:`THRESHOLD_RULES`. :func:`recalibrate` (``ssimae
calibrate``) chooses a trained run's threshold anew on new defect-free images.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ssimae.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.metrics import image_scores, select_threshold
from ssimae.morphology import gray_opening
from ssimae.residual import get_residual
from ssimae.scoring import smooth_map
from ssimae.settings import InferenceSettings

RuleFn = Callable[[Sequence[np.ndarray], InferenceSettings], float]


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


THRESHOLD_RULES: dict[str, RuleFn] = {
    "max-region": lambda maps, s: select_threshold(maps, s.opening_diameter, s.min_defect_area),
    "fpr": lambda maps, s: fpr_threshold(maps, s.opening_diameter, s.target_fpr),
    "quantile": lambda maps, s: quantile_threshold(maps, s.opening_diameter, s.quantile),
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
    if own in collected and (s.smooth == 0 or not s.preprocess.resizes):
        # no resize: smoothing the unsmoothed maps is what the detector does, without a second pass
        own_maps = [smooth_map(m, s.smooth) for m in collected[own]]
    else:
        own_maps = [detector.residual_map(s.preprocess.read(p)) for p in images]
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
        _, maps = raw.analyze_many(s.preprocess.read(p), names)
        for n in names:
            collected[n].append(maps[n])
    s.residual_stats = {n: _pooled_stats(collected[n]) for n in STATS_RESIDUALS}
    return collected


def _pooled_stats(maps: Sequence[np.ndarray]) -> list[float]:
    """[mean, standard deviation] of all pixels of all maps (of any sizes)."""
    values = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    return [float(values.mean()), float(values.std())]


# --- recalibration of a trained run (``ssimae calibrate``) ------------------------------------

RULE_OPTIONS = ("threshold_rule", "target_fpr", "quantile", "min_defect_area")  # what a rule reads


def recalibrate(run: str | os.PathLike, good: Sequence[str | os.PathLike], *, device: str | None = None,
                progress: bool = True, log=print, **rule) -> float:
    """Choose a run's threshold anew on folders (or files) of defect-free images, without
    retraining, and write it into the run (model.pt, then config.json, each atomically).

    ``rule``: any of RULE_OPTIONS (default: the run's own). The validation statistics of the
    residuals are recomputed on the same images. The previous threshold, its rule and
    options are appended to ``threshold_history`` with the time and the images used.
    Bad options, no images, unreadable images and a run folder that cannot be written raise
    SsimaeError before anything in the run changes. Returns the new threshold.
    """
    from ssimae.checkpoint import atomic_write_text, load_checkpoint, resolve_checkpoint, save_checkpoint
    from ssimae.predict import collect_inputs

    path = resolve_checkpoint(run)
    ckpt = load_checkpoint(path)
    old = ckpt["settings"].inference
    unknown = set(rule) - set(RULE_OPTIONS)
    if unknown:
        raise TypeError(f"unknown rule options {sorted(unknown)}")
    new = replace(old, **{k: v for k, v in rule.items() if v is not None})  # checks the options' ranges
    for target in (path, path.parent):
        if not os.access(target, os.W_OK):
            raise SsimaeError("not writable: the run's threshold cannot be updated", target)
    files = [f for f, _ in collect_inputs(list(good))]
    detector = Detector.load(path, device)
    detector.settings = new
    threshold = calibrate(detector, files, progress)
    entry = {"previous_threshold": old.threshold, "previous": {k: getattr(old, k) for k in RULE_OPTIONS},
             "recalibrated_on": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "good": ", ".join(os.fspath(g) for g in good), "n_images": len(files)}
    settings = ckpt["settings"]
    settings.inference = replace(new, threshold=threshold, threshold_history=(*old.threshold_history, entry))
    try:
        save_checkpoint(path, settings=settings, model=ckpt["model"], optimizer=ckpt.get("optimizer"),
                        epoch=ckpt.get("epoch", 0), step=ckpt.get("step", 0), finished=ckpt.get("finished", False),
                        rng=ckpt.get("rng"))
    except OSError as e:
        raise SsimaeError(f"cannot write the run ({e.strerror or e}); its threshold is unchanged", path) from None
    try:
        atomic_write_text(path.parent / "config.json", json.dumps(settings.to_dict(), indent=2, sort_keys=True))
    except OSError as e:
        raise SsimaeError(f"the new threshold is in {path.name}, but config.json could not be written "
                          f"({e.strerror or e})", path.parent) from None
    log(f"threshold {old.threshold:.6g} -> {threshold:.6g} ({new.threshold_rule} rule on {len(files)} defect-free "
        f"images); previous value kept in the run's threshold_history" if old.threshold is not None else
        f"threshold {threshold:.6g} ({new.threshold_rule} rule on {len(files)} defect-free images)")
    return threshold
