"""``ssimae evaluate``, as in the paper (Sec. 4.2): residual maps of all test images, an
opening with a disk of diameter 4 after thresholding, and the pixel-level ROC over the whole
test set (:func:`ssimae.core.metrics.evaluate_maps`).

Residual maps are computed at the resolution of the ground-truth masks (the maps are
resized back to each image's size). Writes REPORT/metrics.json, roc.csv, roc.png, pro.png and
report.html (:mod:`ssimae.reporting.evaluation`; thumbnails under REPORT/thumbs/).
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from ssimae.core.metrics import evaluate_maps
from ssimae.core.residual import check_residual, get_residual
from ssimae.data.datasets import load_dataset
from ssimae.errors import SsimaeError
from ssimae.inference.calibration import residual_statistics
from ssimae.inference.detector import Detector
from ssimae.inference.fusion import RESIDUAL as FUSION, FusedDetector, is_fusion, read_fusion
from ssimae.inference.scorer import Scorer
from ssimae.inference.test_set import Scores, score_images, validation_images
from ssimae.io.folders import RunLock
from ssimae.reporting.evaluation import ImageRows, write_evaluation
from ssimae.runs.checkpoint import Run, load_run


def dataset_options(run_data: dict, data_root=None, given: dict | None = None) -> tuple[str | None, dict]:
    """(data root, dataset options) of a run's test data: the run's own (``run_data``, its
    ``train.data``), overridden by ``data_root`` and the options ``given``."""
    data = dict(run_data)
    root = data_root or data.pop("root", None)
    data.pop("root", None)
    data.update(given or {})
    if root is None and data.get("train_dir") is None and data.get("test_dir") is None:
        raise SsimaeError("give --data ROOT")
    return root, data


def defect_free_images(run, given, purpose: str, option: str) -> list:
    """The files of ``given`` (folders or files of defect-free images), else the validation
    images of the run folder (or :class:`ssimae.runs.checkpoint.Run`) ``run``: the seeded split of
    its training images, as calibration chose its threshold on. SsimaeError (naming ``option``,
    e.g. "--good") when there are none or ``run`` is an export, which does not know its images."""
    from ssimae.data.inputs import collect_inputs
    from ssimae.inference.engines import is_export

    if given:
        return [f for f, _ in collect_inputs(list(given))]
    if not isinstance(run, Run) and is_export(run):
        raise SsimaeError(f"an export does not know its training images: give {option} DIR of defect-free images", run)
    loaded = load_run(run)
    root, options = dataset_options(loaded.settings.train.data)
    images = validation_images(load_dataset(root, **options, verify=False, log=None, progress=False), loaded.settings)
    if not images:
        raise SsimaeError(f"{purpose} needs defect-free images and the run has no validation images; "
                          f"give {option} DIR", loaded.path)
    return images


def evaluate(run: str | os.PathLike, data_root: str | os.PathLike | None, out: str | os.PathLike, *,
             residual: str | None = None, smooth: float | None = None, dataset_kwargs: dict | None = None,
             device: str | None = None, progress: bool = True, log=print, changes: dict | None = None) -> dict:
    """Evaluate a trained run on a dataset's test images (``data_root``, ``dataset_kwargs``:
    as given; None: the run's own data); returns the metrics dict (with the ROC curve under "roc").

    ``residual`` and ``smooth`` override the run's own; ``changes``: other inference settings
    to change at test time (e.g. ``tiling``, ``model_params``), checked before any work. A residual that needs validation
    statistics the run lacks (runs older than those residuals) gets them from the run's
    own validation images. A fused run (``ssimae fuse``) is evaluated at its own settings on
    its first member's data.
    """
    if is_fusion(run):
        if residual not in (None, FUSION) or smooth is not None or changes:
            raise SsimaeError("a fused run is evaluated at its own residual and settings (change its members instead)", run)
        detector = FusedDetector.load(run, "auto", device)
        member = load_run(Path(run) / read_fusion(Path(run))["members"][0])
        root, options = dataset_options(member.settings.train.data, data_root, dataset_kwargs)
        with RunLock(out, "ssimae evaluate"):
            return _evaluate(member, detector, root, options, out, None, progress, log)
    run = load_run(run)
    detector = Detector.load(run, device)
    if smooth is not None:
        detector = detector.with_settings(smooth=smooth)
    if changes:
        detector = Detector(detector.network, detector.model, replace(detector.settings, **changes),
                            detector.params, detector.device)  # checked as a new detector is
    check_residual(residual or detector.default_residual, detector.model.outputs)
    root, options = dataset_options(run.settings.train.data, data_root, dataset_kwargs)
    with RunLock(out, "ssimae evaluate"):
        return _evaluate(run, detector, root, options, out, residual, progress, log)


def _evaluate(run, detector: Detector, root, options: dict, out, residual: str | None, progress, log) -> dict:
    """:func:`evaluate` inside the report folder's lock."""
    dataset = load_dataset(root, **options, log=log, progress=progress)
    if not dataset.test:
        raise SsimaeError("no test images found", root)
    residual = residual or detector.default_residual
    if residual != FUSION and set(get_residual(residual).needs_stats) - set(detector.settings.residual_stats):
        stats, _ = residual_statistics(detector, validation_images(dataset, run.settings), progress=progress)
        detector = detector.with_settings(residual_stats=stats)
    own = residual == detector.default_residual  # the stored threshold belongs to the run's own residual
    t0 = time.monotonic()
    scores, rows = score_and_show(detector, dataset, (residual,), out, own, progress)
    seconds = time.monotonic() - t0
    return report(scores, residual, out, detector, rows.rows,
                  extra={"seconds_per_image": seconds / len(scores.masks), **verdict_thresholds(detector, own),
                         "smooth": detector.settings.smooth, "tiling": detector.settings.tiling,
                         "model_params": detector.settings.model_params})


def verdict_thresholds(detector: Scorer, own: bool) -> dict:
    """The run's pixel and image thresholds for metrics.json and the report (None each when
    the residual shown is not the run's own, to which they belong)."""
    s = detector.settings
    return {"threshold": s.threshold if own else None, "image_threshold": s.image_threshold if own else None}


def score_and_show(detector: Scorer, dataset, residuals: tuple[str, ...], out, verdicts: bool = True,
                   progress: bool = True, keep=()) -> tuple[Scores, ImageRows]:
    """Score every test image once (maps of ``residuals``) and write its thumbnails and
    report row under ``out`` for the first residual (``verdicts``: its overlay and verdict at
    the stored threshold, which belongs to the run's own residual only)."""
    threshold = detector.threshold if verdicts else None
    rows = ImageRows(out, threshold)
    scores = Scores({k: [] for k in residuals}, keep=frozenset(keep))
    for item in score_images(detector, dataset, residuals, progress):
        scores.add(item)
        shown = item.maps[residuals[0]]
        p = detector.verdict(shown, float("inf") if threshold is None else threshold)
        rows.add(item.index, item.sample.image.name, item.sample.defect_type, item.image, item.reconstruction, shown,
                 item.mask, p, (item.sample.image, item.sample.mask))
    return scores, rows


def report(scores: Scores, residual: str, out, detector: Scorer, images: list[dict] | None = None,
           extra: dict | None = None) -> dict:
    """The metrics of ``scores.maps[residual]`` (:func:`ssimae.core.metrics.evaluate_maps`)
    written to ``out`` (:func:`ssimae.reporting.evaluation.write_evaluation`); returns them,
    with the ROC curve under "roc"."""
    name = detector.model_name
    m = evaluate_maps(scores.maps[residual], scores.masks, scores.types, detector.opening_diameter,
                      detector.settings.image_score)
    curve, pro = m.pop("roc"), m.pop("pro")
    metrics = {"model": name, "residual": residual, "opening_diameter": detector.opening_diameter, **m, **(extra or {})}
    write_evaluation(Path(out), metrics, curve, pro, f"{detector.title} ({residual} residual)", images)
    return metrics | {"roc": curve}
