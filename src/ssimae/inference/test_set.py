"""Scoring a dataset's test images once: every image reconstructed once, its residual maps of
each asked kind at the image's resolution, with its ground-truth mask (evaluate, compare)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np
from ssimae.io.progress import progress as progress_display

from ssimae.data.datasets import Dataset, Sample, seeded_split
from ssimae.inference.scorer import Scorer
from ssimae.io.images import read_mask


class TestImage(NamedTuple):
    """One scored test image: its index and sample, the image as read ((H, W) or (H, W, 3)
    float32), its reconstruction, {residual: (H, W) map} and its (H, W) bool ground truth."""

    index: int
    sample: Sample
    image: np.ndarray
    reconstruction: np.ndarray
    maps: dict
    mask: np.ndarray


def score_images(detector: Scorer, dataset: Dataset, residuals=None, progress: bool = True) -> Iterator[TestImage]:
    """:class:`TestImage` of each test image in order, with the maps of ``residuals``
    (default: the run's own)."""
    names = tuple(residuals or (detector.default_residual,))
    for i, s in enumerate(progress_display(dataset.test, desc="scoring test images", enabled=progress)):
        img = detector.read(s.image)
        recon, maps = detector.analyze_many(img, names)
        mask = np.zeros(img.shape[:2], bool) if s.mask is None else read_mask(s.mask, img.shape[:2])
        yield TestImage(i, s, img, recon, maps, mask)


@dataclass
class Scores:
    """Residual maps of a test set: maps[residual][i] (H_i, W_i), masks[i] bool, types[i],
    and the reconstructions of the images whose index is in ``keep``."""

    maps: dict[str, list[np.ndarray]]
    masks: list[np.ndarray] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    reconstructions: dict[int, np.ndarray] = field(default_factory=dict)
    keep: frozenset = frozenset()

    def add(self, item: TestImage) -> None:
        for k in self.maps:
            self.maps[k].append(item.maps[k])
        if item.index in self.keep:
            self.reconstructions[item.index] = item.reconstruction
        self.masks.append(item.mask)
        self.types.append(item.sample.defect_type)


def score_test_set(detector: Scorer, dataset: Dataset, residuals=None, progress: bool = True, keep=()) -> Scores:
    """:func:`score_images` of every test image collected into :class:`Scores`."""
    names = tuple(residuals or (detector.default_residual,))
    scores = Scores({k: [] for k in names}, keep=frozenset(keep))
    for item in score_images(detector, dataset, names, progress):
        scores.add(item)
    return scores


def validation_images(dataset: Dataset, run_settings) -> list:
    """The run's own validation images (the seeded split of its training images)."""
    t = run_settings.train
    return seeded_split(dataset.train, t.val_fraction, t.seed)[1]
