"""``ssimae calibrate``: choose a trained run's threshold anew on new defect-free images
(a new camera, new lighting), without retraining; the previous one is kept in its history."""
from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError
from ssimae.inference.calibration import calibrate
from ssimae.inference.detector import Detector
from ssimae.io.folders import RunLock
from ssimae.runs.checkpoint import load_run, resolve_checkpoint, save_run
from ssimae.runs.settings import RunSettings

RULE_OPTIONS = ("threshold_rule", "target_fpr", "quantile", "min_defect_area", "image_fpr",
                "image_score", "image_threshold_rule")  # what a rule reads


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
    path = resolve_checkpoint(run)
    with RunLock(path.parent, "ssimae calibrate"):
        return _recalibrate(path, good, device, progress, log, rule)


def _recalibrate(path: Path, good, device, progress, log, rule) -> float:
    """:func:`recalibrate` inside the run folder's lock."""
    run = load_run(path)
    old = run.settings.inference
    unknown = set(rule) - set(RULE_OPTIONS)
    if unknown:
        raise TypeError(f"unknown rule options {sorted(unknown)}")
    new = replace(old, **{k: v for k, v in rule.items() if v is not None})  # checks the options' ranges
    for target in (path, path.parent):
        if not os.access(target, os.W_OK):
            raise SsimaeError("not writable: the run's threshold cannot be updated", target)
    files = [f for f, _ in collect_inputs(list(good))]
    found = calibrate(Detector.load(run, device).with_settings(**{k: getattr(new, k) for k in RULE_OPTIONS}),
                      files, progress)
    threshold = found.threshold
    entry = {"previous_threshold": old.threshold, "previous_image_threshold": old.image_threshold,
             "previous": {k: getattr(old, k) for k in RULE_OPTIONS},
             "recalibrated_on": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "good": ", ".join(os.fspath(g) for g in good), "n_images": len(files)}
    settings = RunSettings(run.settings.train, replace(new, threshold=threshold, residual_stats=found.residual_stats,
                                                       image_threshold=found.image_threshold,
                                                       image_threshold_images=found.images,
                                                       threshold_history=(*old.threshold_history, entry)))
    save_run(path, settings, run.state)
    log(f"threshold {old.threshold:.6g} -> {threshold:.6g} ({new.threshold_rule} rule on {len(files)} defect-free "
        f"images); previous value kept in the run's threshold_history" if old.threshold is not None else
        f"threshold {threshold:.6g} ({new.threshold_rule} rule on {len(files)} defect-free images)")
    return threshold
