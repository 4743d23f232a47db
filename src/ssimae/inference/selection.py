"""Choosing a model from good images alone: the synthetic-anomaly proxy.

A user with only defect-free images cannot measure a candidate's AUC on real defects. The
proxy pastes anomalies of a family that no candidate is trained on
(:func:`ssimae.data.synthetic.proxy_anomaly`: stains and scratches) into held-back defect-free
images and measures how well the candidate finds them, with the metrics of the paper's
protocol: the pixel ROC AUC of its opened residual maps over the pasted masks
(:func:`ssimae.core.metrics.evaluate_maps`) and the image ROC AUC of its image scores, clean
images against anomalous ones. The candidates are ranked by the mean of the two
(:func:`proxy_rank`). How well this ranks the candidates the way real defects do is measured on
the dev sets (benchmarks/suite.py, docs/results/suite/).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ssimae.core.metrics import evaluate_maps
from ssimae.data.synthetic import proxy_anomaly

PROXY_VERSIONS = 2  # anomalous versions of each held-back image


def proxy_images(images: Sequence[np.ndarray], seed: int = 0, versions: int = PROXY_VERSIONS):
    """(images, masks, types) of the proxy's test set: each defect-free image ((H, W) or
    (H, W, C) float in [0, 1]) as it is ("good", empty mask) and ``versions`` times with a
    proxy anomaly ("proxy"), drawn from ``seed`` (the same set for every candidate)."""
    rng = np.random.default_rng(seed)
    out, masks, types = [], [], []
    for im in images:
        out.append(im)
        masks.append(np.zeros(im.shape[:2], bool))
        types.append("good")
        for _ in range(versions):
            a, m = proxy_anomaly(im, rng)
            out.append(a)
            masks.append(m)
            types.append("proxy")
    return out, masks, types


def proxy_scores(detector, images: Sequence[str | os.PathLike | np.ndarray], seed: int = 0,
                 versions: int = PROXY_VERSIONS) -> dict:
    """{"pixel_auc", "image_auc", "proxy", "images"} of a detector (either engine) on the proxy
    test set of ``images`` (files read as the run reads them, or arrays): the pixel ROC AUC with
    the opening (the run's own residual and smoothing), the image ROC AUC of the run's image
    score, and their mean ("proxy", in [0, 1], larger is better)."""
    read = detector.settings.preprocess.read
    arrays = [read(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im, np.float32) for im in images]
    test, masks, types = proxy_images(arrays, seed, versions)
    maps = [detector.residual_map(im) for im in test]
    m = evaluate_maps(maps, masks, types, detector.opening_diameter, detector.settings.image_score)
    return {"pixel_auc": float(m["pixel_roc_auc"]), "image_auc": float(m["image_roc_auc"]),
            "proxy": float((m["pixel_roc_auc"] + m["image_roc_auc"]) / 2), "images": len(arrays)}


def proxy_rank(scores: dict[str, dict]) -> list[str]:
    """Candidate names by their proxy (``proxy_scores(...)["proxy"]``), best first; ties keep
    the given order (the earlier candidate, e.g. the paper's model, wins a tie)."""
    names = list(scores)
    return sorted(names, key=lambda n: (-scores[n]["proxy"], names.index(n)))
