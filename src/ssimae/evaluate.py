"""Evaluation as in the paper (Sec. 4.2): residual maps of all test images, an opening with
a disk of diameter 4 after thresholding, and the pixel-level ROC over the whole test set.

Residual maps are computed at the resolution of the ground-truth masks (the maps are
resized back to each image's size). Writes REPORT/metrics.json, roc.csv, roc.png, pro.png and
report.html (:mod:`ssimae.report`; thumbnails under REPORT/thumbs/).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

import numpy as np
from tqdm.auto import tqdm

from ssimae.checkpoint import atomic_write_text, load_checkpoint
from ssimae.datasets import Dataset, load_dataset, seeded_split
from ssimae.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.images import read_mask
from ssimae.outputs import prepare_out_dir
from ssimae.metrics import evaluate_maps, write_roc_csv
from ssimae.models import get_model
from ssimae.residual import check_residual, get_residual
from ssimae.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, plot_roc
from ssimae.report import _fmt, save_thumbnails, write_report


@dataclass
class Scores:
    """Residual maps of a test set: maps[residual][i] (H_i, W_i), masks[i] bool, types[i],
    and the reconstructions of the images whose index was asked for (``keep``)."""

    maps: dict[str, list[np.ndarray]]
    masks: list[np.ndarray]
    types: list[str]
    reconstructions: dict[int, np.ndarray] = field(default_factory=dict)


def score_test_set(detector: Detector, dataset: Dataset, residuals=None, progress: bool = True,
                   keep=(), each=None) -> Scores:
    """Reconstruct every test image once and compute the residual maps of each kind in
    ``residuals`` (default: the run's own) at the image's resolution. ``each(i, image,
    reconstruction, maps, mask)``, if given, is called for every image as it is scored."""
    names = tuple(residuals or (detector.default_residual,))
    scores = Scores({k: [] for k in names}, [], [])
    for i, s in enumerate(tqdm(dataset.test, desc="scoring test images", disable=not progress, leave=False)):
        img = detector.settings.preprocess.read(s.image)
        recon, maps = detector.analyze_many(img, names)
        for k in names:
            scores.maps[k].append(maps[k])
        if i in keep:
            scores.reconstructions[i] = recon
        scores.masks.append(np.zeros(img.shape[:2], bool) if s.mask is None else read_mask(s.mask, img.shape[:2]))
        scores.types.append(s.defect_type)
        if each is not None:
            each(i, img, recon, maps, scores.masks[-1])
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
           extra: dict | None = None, images: list[dict] | None = None) -> dict:
    """Compute the metrics of residual maps and write metrics.json, roc.csv, roc.png, pro.png
    and report.html (with one row per image of ``images``, see :mod:`ssimae.report`) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = evaluate_maps(maps, masks, types, diameter)
    curve = m.pop("roc")
    pro_fpr, pro = m.pop("pro")
    metrics = {"model": model, "residual": residual, "opening_diameter": diameter, **m, **(extra or {})}
    write_roc_csv(out / "roc.csv", curve)
    label = f"{get_model(model).title} ({residual} residual)"
    plot_roc({label: (curve.fpr, curve.tpr, curve.auc)}, out / "roc.png")
    plot_roc({label: (pro_fpr, pro, m["pro_auc_fpr30"])}, out / "pro.png", title="PRO curve (area to FPR 0.3)",
             ylabel="per-region overlap")
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    write_report(out, title=f"ssimae evaluate: {label}", metrics=metric_rows(metrics), metric_columns=METRIC_COLUMNS,
                 figures=[("pixel-level ROC", "roc.png"), ("PRO curve", "pro.png")], images=images or [],
                 summary=[f"{m['n_images']} test images; threshold {_fmt(metrics.get('threshold'))} "
                          f"(the run's stored one; verdicts and overlays at it); metrics in metrics.json"])
    return metrics | {"roc": curve}


METRIC_COLUMNS = ("images", "n_images", "pixel_roc_auc", "pixel_roc_auc_fpr30", "pro_auc_fpr30", "image_roc_auc")


def metric_rows(metrics: dict) -> list[dict]:
    """Rows of the report's metrics table: all images, then each defect type (with all
    defect-free images), as in metrics.json."""
    rows = [{"images": "all", **{k: metrics.get(k) for k in METRIC_COLUMNS[1:]}}]
    for name, t in sorted(metrics.get("per_type", {}).items()):
        rows.append({"images": name, **{k: t.get(k) for k in METRIC_COLUMNS[1:]}})
    return rows


def image_rows(detector: Detector, dataset: Dataset, residual: str, out: str | os.PathLike, verdicts: bool = True):
    """([], each) for :func:`score_test_set`: ``each`` writes the thumbnails of every test
    image under ``out`` (input, reconstruction, ground truth, heat map and overlay at the
    stored threshold) and appends its report row (:mod:`ssimae.report`) to the list.
    ``verdicts=False``: the threshold does not belong to ``residual``; no verdicts, no overlay."""
    rows: list[dict] = []
    t = detector.threshold if verdicts and detector.threshold is not None else np.inf

    def each(i, img, recon, maps, mask):
        sample = dataset.test[i]
        p = detector.verdict(maps[residual], t)
        rows.append({"path": sample.image.name, "type": sample.defect_type, "score": p.score,
                     "defective": p.defective if t < np.inf else None, "defect_area": p.defect_area,
                     "thumbs": save_thumbnails(out, PurePath(sample.defect_type) / f"{i:05d}_{sample.image.stem}", {
                         "input": img, "reconstruction": recon, "ground truth": mask,
                         "heat map": heatmap_rgb(maps[residual], 0.0, heatmap_vmax(t)),
                         "overlay": overlay_rgb(img, p.mask) if t < np.inf else None})})

    return rows, each


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
    check_residual(residual or detector.default_residual, detector.model.outputs)
    prepare_out_dir(out)
    dataset = load_dataset(data_root, **(dataset_kwargs or {}), log=log, progress=progress)
    if not dataset.test:
        raise SsimaeError("no test images found", data_root)
    residual = residual or detector.default_residual
    if set(get_residual(residual).needs_stats) - set(detector.settings.residual_stats):
        from ssimae.calibrate import residual_statistics

        residual_statistics(detector, validation_images(dataset, load_checkpoint(run)["settings"]),
                            progress=progress)
    t0 = time.monotonic()
    own = residual == detector.default_residual  # the stored threshold belongs to the run's own residual
    rows, thumbnails = image_rows(detector, dataset, residual, out, own)
    scores = score_test_set(detector, dataset, (residual,), progress, each=thumbnails)
    seconds = time.monotonic() - t0
    maps = scores.maps[residual]
    return report(maps, scores.masks, scores.types, out, model=detector.model.name, residual=residual,
                  diameter=detector.opening_diameter, images=rows,
                  extra={"seconds_per_image": seconds / len(maps), "threshold": detector.threshold if own else None,
                         "smooth": detector.settings.smooth})
