"""Per-image verdicts: score, defective yes/no, defect regions; written as CSV and JSON lines.

Definitions (one place for each):

- **image score**: the largest value of the *opened* residual map (the gray-scale opening
  with the run's disk, :func:`ssimae.morphology.gray_opening`). An image is defective at
  threshold ``t`` iff ``score > t``, which is the same as "the defect mask at ``t`` is not
  empty". ``image_roc_auc`` of ``ssimae evaluate`` ranks images by this score
  (:func:`ssimae.metrics.image_scores`).
- **defect regions**: the 8-connected components of the defect mask (the opened residual
  > ``t``), each with its bounding box and area, in raster order of their first pixel
  (``scipy.ndimage.label``).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ssimae.files import atomic_write_text

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as in ssimae.metrics
CSV_NAME, JSONL_NAME = "predictions.csv", "predictions.jsonl"
COLUMNS = ("path", "score", "defective", "defect_area", "n_regions", "regions", "threshold")


@dataclass(frozen=True)
class Region:
    """One defect region: bounding box (x, y = column and row of its top-left pixel,
    width, height, in pixels of the input image) and its area (pixel count)."""

    x: int
    y: int
    width: int
    height: int
    area: int


def find_regions(mask: np.ndarray) -> list[Region]:
    """8-connected regions of an (H, W) bool mask, numbered as ``scipy.ndimage.label`` does."""
    labels, n = ndi.label(np.asarray(mask, dtype=bool), structure=_EIGHT)
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return [Region(int(sl[1].start), int(sl[0].start), int(sl[1].stop - sl[1].start), int(sl[0].stop - sl[0].start),
                   int(a)) for sl, a in zip(ndi.find_objects(labels), areas)]


@dataclass
class Prediction:
    """What :meth:`ssimae.detector.Detector.predict` says about one image.

    score: the image score (module docstring); threshold: the one used; mask: (H, W) bool
    defect mask; residual: (H, W) float32 map; regions: the mask's regions;
    reconstruction: (H, W) float32 or None. ``defective``: the mask is not empty, i.e.
    ``score > threshold`` compared in the map's precision (float32).
    """

    score: float
    threshold: float
    mask: np.ndarray
    residual: np.ndarray
    regions: list[Region] = field(default_factory=list)
    reconstruction: np.ndarray | None = None

    @property
    def defective(self) -> bool:
        return bool(self.mask.any())

    @property
    def defect_area(self) -> int:
        """Number of defect pixels (the mask's pixel count)."""
        return int(self.mask.sum())

    def record(self, path: str) -> dict:
        """The JSON-ready verdict of this image (the columns of :data:`COLUMNS`)."""
        return {"path": path, "score": float(self.score), "defective": self.defective,
                "defect_area": self.defect_area, "n_regions": len(self.regions),
                "regions": [r.__dict__ for r in self.regions], "threshold": float(self.threshold)}


def write_verdicts(records: list[dict], out: str | os.PathLike) -> None:
    """Write ``out``/predictions.csv (regions as a JSON list in one column; defective as
    yes/no) and ``out``/predictions.jsonl (one JSON object per image), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in records:
        w.writerow([r["path"], repr(r["score"]), "yes" if r["defective"] else "no", r["defect_area"],
                    r["n_regions"], json.dumps(r["regions"], separators=(",", ":")), repr(r["threshold"])])
    atomic_write_text(os.path.join(out, CSV_NAME), buf.getvalue())
    atomic_write_text(os.path.join(out, JSONL_NAME), "".join(json.dumps(r) + "\n" for r in records))


def summary(records: list[dict]) -> str:
    """'12 of 340 images defective'."""
    n = sum(r["defective"] for r in records)
    return f"{n} of {len(records)} image{'s' if len(records) != 1 else ''} defective"
