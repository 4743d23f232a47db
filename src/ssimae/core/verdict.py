"""Per-image verdicts: score, defective yes/no, defect regions (written by :mod:`ssimae.reporting.tables`).

Definitions (one place for each):

- **image score**: by default the largest value of the *opened* residual map (the gray-scale
  opening with the run's disk, :func:`ssimae.core.morphology.gray_opening`), or the mean of its
  largest 1 % (``image_score = "top1%"``, :data:`IMAGE_SCORES`). ``image_roc_auc`` of
  ``ssimae evaluate`` ranks images by the run's score.
- **defective**: the image score above the run's *image threshold*, chosen on defect-free
  validation images for a false-reject rate ``image_fpr``
  (:func:`ssimae.core.thresholds.image_threshold`); runs calibrated before image thresholds
  existed have none, and their images are defective iff the defect mask at the pixel
  threshold ``t`` is not empty (``max score > t``). The pixel threshold always draws the mask.
- **the verdict threshold**: the threshold that decides, the image threshold (or, for runs
  without one, the pixel threshold ``t``); every verdict is shown beside it, and the
  **normalised score** ``score / verdict threshold`` (:attr:`Prediction.score_norm`) makes 1.0
  the cut on every run (above 1: defective).
- **defect regions**: the 8-connected components of the defect mask (the opened residual
  > ``t``), each with its bounding box and area, in raster order of their first pixel
  (``scipy.ndimage.label``). On an image that passed they are not defects: they are
  labelled :data:`BELOW_VERDICT` (``regions_are``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ssimae.core.morphology import is_defect, label_regions

GOOD = "good"  # the defect type of defect-free images (test folders, metrics, reports)
DEFECTS, BELOW_VERDICT = "defects", "below the verdict threshold"  # what the regions of an image are


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


TOP_SHARE = 0.01  # the "top1%" image score: mean of the largest 1 % of the opened map


def top_mean(opened: np.ndarray, share: float = TOP_SHARE) -> float:
    """Mean of the largest ``max(1, floor(share * n))`` of the n values of an (H, W) map."""
    flat = np.asarray(opened, dtype=np.float64).ravel()
    k = max(1, int(share * flat.size))
    return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())


# How an image's score is made from its opened residual map (``InferenceSettings.image_score``).
# "max" is the paper-era definition (an image is defective iff its mask is not empty);
# "top1%" (beyond the paper) ranks images better when good images have a few bright pixels
# (measured: docs/results/models/).
IMAGE_SCORES = {"max": lambda opened: float(np.max(opened)), "top1%": top_mean}


def image_score(opened: np.ndarray, rule: str = "max") -> float:
    """The score of an image from its *opened* residual map (H, W): ``rule`` in
    :data:`IMAGE_SCORES` (default "max": its largest value, so ``score > t`` iff the defect mask
    at ``t`` (:func:`ssimae.core.morphology.is_defect`) is not empty)."""
    return IMAGE_SCORES[rule](opened)


def image_scores(opened_residuals, rule: str = "max") -> np.ndarray:
    """:func:`image_score` of each opened map: (N,) float64."""
    return np.array([image_score(r, rule) for r in opened_residuals], dtype=np.float64)


def verdict(residual: np.ndarray, opened: np.ndarray, threshold: float,
            reconstruction: np.ndarray | None = None, image_threshold: float | None = None,
            rule: str = "max") -> "Prediction":
    """The Prediction of an (H, W) residual map and its opening: the mask at the pixel
    ``threshold``; the image defective when its score (``rule``) exceeds ``image_threshold``,
    or, without one, when the mask is not empty."""
    mask = is_defect(opened, threshold)
    score = image_score(opened, rule)
    return Prediction(score, float(threshold), mask, residual, find_regions(mask), reconstruction,
                      None if image_threshold is None else float(image_threshold))


@dataclass
class Prediction:
    """What :meth:`ssimae.inference.detector.Detector.predict` says about one image.

    score: the image score (module docstring); threshold: the pixel threshold used; mask:
    (H, W) bool defect mask; residual: (H, W) float32 map; regions: the mask's regions;
    reconstruction: (H, W) float32 or None; image_threshold: the image-level threshold (beyond
    the paper; None for runs calibrated without one). ``defective``: ``score > image_threshold``
    when there is one, else the mask is not empty (``score > threshold`` in float32).
    """

    score: float
    threshold: float
    mask: np.ndarray
    residual: np.ndarray
    regions: list[Region] = field(default_factory=list)
    reconstruction: np.ndarray | None = None
    image_threshold: float | None = None

    @property
    def defective(self) -> bool:
        if self.image_threshold is not None:
            return bool(self.score > self.image_threshold)
        return bool(self.mask.any())

    @property
    def verdict_threshold(self) -> float:
        """The threshold that decides the verdict: the image threshold, else the pixel one."""
        return self.threshold if self.image_threshold is None else self.image_threshold

    @property
    def score_norm(self) -> float | None:
        """score / verdict threshold: above 1.0 exactly when defective (None for a threshold
        that is not positive)."""
        t = self.verdict_threshold
        return float(self.score / t) if t > 0 else None

    @property
    def defect_area(self) -> int:
        """Number of defect pixels (the mask's pixel count)."""
        return int(self.mask.sum())

    def to_dict(self, path: str = "", source: str | None = None) -> dict:
        """The JSON-ready verdict of this image: its row of predictions.jsonl (the columns of
        :data:`ssimae.reporting.tables.COLUMNS` that ``predict`` knows from the image alone;
        the label and outcome come from its input folder): ``path`` its output name, ``source``
        the file as given (printable), when known."""
        out = {"path": path, "score": float(self.score), "score_norm": self.score_norm, "defective": self.defective,
               "defect_area": self.defect_area, "n_regions": len(self.regions),
               "regions": [r.__dict__ for r in self.regions], "regions_are": DEFECTS if self.defective else BELOW_VERDICT,
               "threshold": float(self.threshold), "image_threshold": self.image_threshold}
        return out if source is None else out | {"source": source}
