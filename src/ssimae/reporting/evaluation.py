"""The files ``evaluate`` (and ``compare``, per model and residual) writes into a report
folder: metrics.json, roc.csv, roc.png, pro.png and report.html with one row per test image
(thumbnails under thumbs/)."""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePath

import numpy as np

from ssimae.core.verdict import Prediction
from ssimae.data.inputs import safe_part
from ssimae.io.files import atomic_write_text, json_safe
from ssimae.reporting.html import full_size_link, save_thumbnails, write_report
from ssimae.reporting.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, plot_roc
from ssimae.reporting.predictions import threshold_story
from ssimae.reporting.tables import outcome, write_roc_csv

METRIC_COLUMNS = ("images", "n_images", "pixel_roc_auc", "pixel_roc_auc_fpr30", "pro_auc_fpr30", "image_roc_auc")


def metric_rows(metrics: dict) -> list[dict]:
    """Rows of the report's metrics table: all images, then each defect type (with all
    defect-free images), as in metrics.json."""
    rows = [{"images": "all", **{k: metrics.get(k) for k in METRIC_COLUMNS[1:]}}]
    for name, t in sorted(metrics.get("per_type", {}).items()):
        rows.append({"images": name, **{k: t.get(k) for k in METRIC_COLUMNS[1:]}})
    return rows


class ImageRows:
    """The report rows of the test images, with their thumbnails written under ``out``
    (input, reconstruction, ground truth, heat map and, when the threshold belongs to the
    residual shown, the overlay at it): :meth:`add` one image at a time."""

    def __init__(self, out: str | os.PathLike, threshold: float | None):
        self.out, self.threshold = Path(out), threshold
        self.rows: list[dict] = []

    def add(self, index: int, name: str, defect_type: str, image: np.ndarray, reconstruction: np.ndarray,
            residual: np.ndarray, mask: np.ndarray, p: Prediction, files: tuple = ()) -> None:
        """One test image (``p``: its verdict at the threshold, or at +inf without one;
        ``files``: its image file and ground-truth mask file (None for none), which the
        thumbnails link to)."""
        t = np.inf if self.threshold is None else self.threshold
        known = self.threshold is not None
        full = {k: full_size_link(f, self.out) for k, f in zip(("input", "ground truth"), files) if f is not None}
        self.rows.append({"path": name, "type": defect_type, "score": p.score,
                          "score_norm": p.score_norm if known else None, "defective": p.defective if known else None,
                          "outcome": outcome(defect_type, p.defective) if known else None,
                          "defect_area": p.defect_area, "full": full,
                          "thumbs": save_thumbnails(self.out, PurePath(safe_part(defect_type, defect_type)) /
                                                    safe_part(f"{index:05d}_{Path(name).stem}", name), {
                              "input": image, "reconstruction": reconstruction, "ground truth": mask,
                              "heat map": heatmap_rgb(residual, 0.0, heatmap_vmax(t)),
                              "overlay": overlay_rgb(image, p.mask) if self.threshold is not None else None})})


def evaluation_summary(metrics: dict) -> str:
    """The report's first line: how many test images, and which threshold decides (or none)."""
    t = metrics.get("threshold")
    said = (threshold_story(t, metrics.get("image_threshold")) + " (the run's stored ones)" if t is not None
            else "no verdicts (the stored threshold belongs to the run's own residual)")
    return f"{metrics['n_images']} test images; {said}; metrics in metrics.json"


def write_evaluation(out: str | os.PathLike, metrics: dict, curve, pro: tuple, label: str,
                     images: list[dict] | None = None) -> None:
    """metrics.json (``metrics``, NaN as null), roc.csv and roc.png (``curve``, a
    :class:`ssimae.core.metrics.RocCurve`), pro.png (``pro``: (fpr, overlap)) and report.html
    (``label`` names the model and residual; ``images``: rows of :class:`ImageRows`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_roc_csv(out / "roc.csv", curve)
    plot_roc({label: (curve.fpr, curve.tpr, curve.auc)}, out / "roc.png")
    plot_roc({label: (pro[0], pro[1], metrics["pro_auc_fpr30"])}, out / "pro.png",
             title="PRO curve (area to FPR 0.3)", ylabel="per-region overlap")
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    write_report(out, title=f"ssimae evaluate: {label}", metrics=metric_rows(metrics), metric_columns=METRIC_COLUMNS,
                 figures=[("pixel-level ROC", "roc.png"), ("PRO curve", "pro.png")], images=images or [],
                 summary=[evaluation_summary(metrics)],
                 heat_scale=None if metrics.get("threshold") is None else (heatmap_vmax(metrics["threshold"]),
                                                                         metrics["threshold"]))
