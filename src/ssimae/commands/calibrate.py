"""``ssimae calibrate``: choose a trained run's thresholds anew on new defect-free images
(a new camera, new lighting), without retraining; the previous ones are kept in its history,
and ``ssimae calibrate RUN --undo`` restores them (:func:`undo_calibration`)."""
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
from ssimae.inference.engines import is_export
from ssimae.inference.fusion import is_fusion
from ssimae.runs.checkpoint import load_run, refuse_while_training, resolve_checkpoint, save_run
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
    if is_fusion(run):
        raise SsimaeError("a fused run's thresholds are set by ssimae fuse: fuse its runs again with --images DIR", run)
    if is_export(run):
        raise SsimaeError("an export cannot be recalibrated: calibrate the run it was exported from, then export "
                          "it again", run)
    refuse_while_training(run)
    path = resolve_checkpoint(run)
    with RunLock(path.parent, "ssimae calibrate"):
        return _recalibrate(path, good, device, progress, log, rule)


def calibrate_once(run: str | os.PathLike, good: str | os.PathLike, *, device: str | None = None,
                   progress: bool = True, log=print) -> bool:
    """:func:`recalibrate` ``run`` on the defect-free images under the folder ``good`` (its
    absolute path is what the run's threshold_history records), unless its last calibration
    was on that folder with as many images and its image threshold rests on them, so that
    running it again changes nothing. Returns whether it calibrated now."""
    folder = Path(good).resolve()
    inference = load_run(resolve_checkpoint(run)).settings.inference
    n = len(collect_inputs([folder]))
    last = inference.threshold_history[-1] if inference.threshold_history else {}
    if (last.get("good"), last.get("n_images"), inference.image_threshold_images) == (os.fspath(folder), n, n):
        return False
    recalibrate(run, [folder], device=device, progress=progress, log=log)
    return True


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
             "previous_image_threshold_images": old.image_threshold_images,
             "previous_residual_stats": dict(old.residual_stats),
             "previous": {k: getattr(old, k) for k in RULE_OPTIONS},
             "recalibrated_on": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "good": ", ".join(os.fspath(g) for g in good), "n_images": len(files)}
    settings = RunSettings(run.settings.train, replace(new, threshold=threshold, residual_stats=found.residual_stats,
                                                       image_threshold=found.image_threshold,
                                                       image_threshold_images=found.images,
                                                       threshold_history=(*old.threshold_history, entry)))
    save_run(path, settings, run.state)
    log(f"{thresholds_moved(old, settings.inference)} ({new.threshold_rule} rule on {len(files)} defect-free images); "
        f"the previous values are kept in the run's threshold_history: undo with ssimae calibrate {path.parent} --undo")
    return threshold


def thresholds_moved(old, new) -> str:
    """'image threshold 0.8217 -> 0.8256 (decides the verdict), pixel threshold 0.8248 ->
    0.8266 (draws the masks)' from two InferenceSettings (a missing value: "none")."""
    def moved(a, b) -> str:
        return " -> ".join("none" if v is None else f"{v:.6g}" for v in (a, b))

    return (f"image threshold {moved(old.image_threshold, new.image_threshold)} (decides the verdict), "
            f"pixel threshold {moved(old.threshold, new.threshold)} (draws the masks)")


def undo_calibration(run: str | os.PathLike, *, log=print) -> None:
    """Restore the thresholds, their rules and options, the count of images the image
    threshold rests on and the residual statistics that the last ``ssimae calibrate`` replaced (the last entry of ``threshold_history``, which is
    removed), atomically, holding the run folder's lock; SsimaeError when there is none."""
    refuse_while_training(run)
    path = resolve_checkpoint(run)
    with RunLock(path.parent, "ssimae calibrate"):
        loaded = load_run(path)
        now = loaded.settings.inference
        if not now.threshold_history:
            raise SsimaeError("nothing to undo: the run's threshold_history is empty (it was never recalibrated)",
                              path.parent)
        last = now.threshold_history[-1]
        before = replace(now, **last["previous"], threshold=last["previous_threshold"],
                         image_threshold=last.get("previous_image_threshold"),
                         image_threshold_images=last.get("previous_image_threshold_images"),
                         residual_stats=last.get("previous_residual_stats", now.residual_stats),
                         threshold_history=now.threshold_history[:-1])
        save_run(path, RunSettings(loaded.settings.train, before), loaded.state)
    log(f"{thresholds_moved(now, before)}: restored the values before the calibration of {last['recalibrated_on']} "
        f"on {last['good']}")
