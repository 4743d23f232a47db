"""Evaluation as in the paper (Sec. 4.2): residual maps of all test images, an opening with
a disk of diameter 4 after thresholding, and the pixel-level ROC over the whole test set.

Residual maps are computed at the resolution of the ground-truth masks (the maps are
resized back to each image's size). Writes REPORT/metrics.json, roc.csv and roc.png.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ssimae.checkpoint import atomic_write_text, load_checkpoint
from ssimae.datasets import Dataset, load_dataset, seeded_split
from ssimae.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.images import read_image, read_mask
from ssimae.metrics import evaluate_maps, write_roc_csv
from ssimae.models import get_model
from ssimae.residual import get_residual
from ssimae.plots import plot_roc


@dataclass
class Scores:
    """Residual maps of a test set: maps[residual][i] (H_i, W_i), masks[i] bool, types[i],
    and the reconstructions of the images whose index was asked for (``keep``)."""

    maps: dict[str, list[np.ndarray]]
    masks: list[np.ndarray]
    types: list[str]
    reconstructions: dict[int, np.ndarray] = field(default_factory=dict)


def score_test_set(detector: Detector, dataset: Dataset, residuals=None, progress: bool = True,
                   keep=()) -> Scores:
    """Reconstruct every test image once and compute the residual maps of each kind in
    ``residuals`` (default: the run's own) at the image's resolution."""
    names = tuple(residuals or (detector.default_residual,))
    scores = Scores({k: [] for k in names}, [], [])
    for i, s in enumerate(tqdm(dataset.test, desc="scoring test images", disable=not progress, leave=False)):
        img = read_image(s.image)
        recon, maps = detector.analyze_many(img, names)
        for k in names:
            scores.maps[k].append(maps[k])
        if i in keep:
            scores.reconstructions[i] = recon
        scores.masks.append(np.zeros(img.shape, bool) if s.mask is None else read_mask(s.mask, img.shape))
        scores.types.append(s.defect_type)
    return scores


def json_safe(obj):
    """Replace NaN/inf by None so metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def report(maps, masks, types, out: str | os.PathLike, *, model: str, residual: str, diameter: int,
           extra: dict | None = None) -> dict:
    """Compute the metrics of residual maps and write metrics.json, roc.csv, roc.png to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = evaluate_maps(maps, masks, types, diameter)
    curve = m.pop("roc")
    metrics = {"model": model, "residual": residual, "opening_diameter": diameter, **m, **(extra or {})}
    write_roc_csv(out / "roc.csv", curve)
    plot_roc({f"{get_model(model).title} ({residual} residual)": (curve.fpr, curve.tpr, curve.auc)}, out / "roc.png")
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    return metrics | {"roc": curve}


def validation_images(dataset: Dataset, run_settings) -> list:
    """The run's own validation images (the seeded split of its training images)."""
    t = run_settings.train
    return seeded_split(dataset.train, t.val_fraction, t.seed)[1]


def evaluate(run: str | os.PathLike, data_root: str | os.PathLike | None, out: str | os.PathLike, *,
             residual: str | None = None, smooth: float | None = None, dataset_kwargs: dict | None = None,
             device: str | None = None, progress: bool = True, log=print) -> dict:
    """Evaluate a trained run on a dataset's test images; returns the metrics dict.

    ``residual`` and ``smooth`` override the run's own. A residual that needs validation
    statistics the run lacks (runs older than those residuals) gets them from the run's
    own validation images.
    """
    detector = Detector.load(run, device)
    if smooth is not None:
        detector.settings = replace(detector.settings, smooth=smooth)
    dataset = load_dataset(data_root, **(dataset_kwargs or {}), log=log, progress=progress)
    if not dataset.test:
        raise SsimaeError("no test images found", data_root)
    residual = residual or detector.default_residual
    if set(get_residual(residual).needs_stats) - set(detector.settings.residual_stats):
        from ssimae.calibrate import residual_statistics

        residual_statistics(detector, validation_images(dataset, load_checkpoint(run)["settings"]),
                            progress=progress)
    t0 = time.monotonic()
    scores = score_test_set(detector, dataset, (residual,), progress)
    seconds = time.monotonic() - t0
    maps = scores.maps[residual]
    return report(maps, scores.masks, scores.types, out, model=detector.model.name, residual=residual,
                  diameter=detector.opening_diameter,
                  extra={"seconds_per_image": seconds / len(maps), "threshold": detector.threshold,
                         "smooth": detector.settings.smooth})
