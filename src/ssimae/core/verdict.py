"""Per-image verdicts: score, defective yes/no, defect regions (written by :mod:`ssimae.reporting.tables`).

Definitions (one place for each):

- **image score**: the largest value of the *opened* residual map (the gray-scale opening
  with the run's disk, :func:`ssimae.core.morphology.gray_opening`). An image is defective at
  threshold ``t`` iff ``score > t``, which is the same as "the defect mask at ``t`` is not
  empty". ``image_roc_auc`` of ``ssimae evaluate`` ranks images by this score
  (:func:`ssimae.core.metrics.image_scores`).
- **defect regions**: the 8-connected components of the defect mask (the opened residual
  > ``t``), each with its bounding box and area, in raster order of their first pixel
  (``scipy.ndimage.label``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ssimae.core.morphology import is_defect, label_regions

GOOD = "good"  # the defect type of defect-free images (test folders, metrics, reports)


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
    labels, n = label_regions(mask)
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return [Region(int(sl[1].start), int(sl[0].start), int(sl[1].stop - sl[1].start), int(sl[0].stop - sl[0].start),
                   int(a)) for sl, a in zip(ndi.find_objects(labels), areas)]


def image_score(opened: np.ndarray) -> float:
    """The one definition of an image's score: the largest value of its *opened* residual map
    (H, W). ``score > t`` iff the defect mask at ``t`` (:func:`ssimae.core.morphology.is_defect`) is not empty."""
    return float(np.max(opened))


def image_scores(opened_residuals) -> np.ndarray:
    """:func:`image_score` of each opened map: (N,) float64."""
    return np.array([image_score(r) for r in opened_residuals], dtype=np.float64)


def verdict(residual: np.ndarray, opened: np.ndarray, threshold: float,
            reconstruction: np.ndarray | None = None) -> "Prediction":
    """The Prediction of an (H, W) residual map and its opening at ``threshold``."""
    mask = is_defect(opened, threshold)
    return Prediction(image_score(opened), float(threshold), mask, residual, find_regions(mask), reconstruction)


@dataclass
class Prediction:
    """What :meth:`ssimae.inference.detector.Detector.predict` says about one image.

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

    def record(self, path: str, source: str | None = None) -> dict:
        """The JSON-ready verdict of this image (the columns of :data:`ssimae.reporting.tables.COLUMNS`):
        ``path`` its output name, ``source`` the file as given (printable), when known."""
        out = {"path": path, "score": float(self.score), "defective": self.defective,
               "defect_area": self.defect_area, "n_regions": len(self.regions),
               "regions": [r.__dict__ for r in self.regions], "threshold": float(self.threshold)}
        return out if source is None else out | {"source": source}
