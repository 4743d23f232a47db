"""``ssimae predict``: a verdict, a heat map, a binary defect mask and an overlay for every
input image, with either engine; the files are written by
:class:`ssimae.reporting.predictions.PredictionWriter` (predictions.csv / .jsonl, report.html)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError, printable
from ssimae.inference.engines import open_detector
from ssimae.io.folders import RunLock
from ssimae.io.progress import progress as progress_display
from ssimae.reporting.predictions import OWN_FOLDERS, PredictionRows, PredictionWriter, remove_previous_result


def predict(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike | None, *,
            threshold: float | None = None, save_raw: bool = False, device: str | None = None,
            residual: str | None = None, smooth: float | None = None, progress: bool = True, log=print,
            engine: str = "auto", skip_bad: bool = False, emit: Callable[[dict], None] | None = None) -> list[Path]:
    """Write DIR/<rel>_heatmap.png, <rel>_mask.png, <rel>_overlay.png and, with ``save_raw``,
    DIR/<rel>.npy (the float32 residual map at the image's resolution) for every image, and
    the verdicts of all images in DIR/predictions.csv and DIR/predictions.jsonl; returns the
    written bases DIR/<rel>. DIR holds one result: an earlier predict's outputs in it are
    removed first (:func:`ssimae.reporting.predictions.remove_previous_result`), other files kept.

    ``skip_bad``: an unreadable image is reported (on stderr, and in the report) and skipped
    instead of stopping the run. ``engine``: "torch" (``run`` is a run folder or checkpoint),
    "onnx" (``run`` is an export of :mod:`ssimae.inference.export`, run without torch) or
    "auto" (onnx for an export, :func:`ssimae.inference.engines.pick_engine`).

    ``out`` None: no file is written (``ssimae predict`` without ``--out``). ``emit``: called
    with each row of predictions.jsonl, in input order, once all images are scored."""
    if out is None and save_raw:
        raise SsimaeError("--save-raw writes files: give --out DIR")
    detector, t, name = open_detector(run, threshold=threshold, device=device, residual=residual, smooth=smooth,
                                      engine=engine)
    files = collect_inputs(inputs, exclude=out, reserved=OWN_FOLDERS)
    if out is None:
        return _predict(detector, files, None, t, threshold, name, save_raw, skip_bad, progress, log, run, inputs,
                        emit)
    with RunLock(out, "ssimae predict"):
        return _predict(detector, files, Path(out), t, threshold, name, save_raw, skip_bad, progress, log, run, inputs,
                        emit)


def _predict(detector, files, out: Path | None, t: float, threshold, name: str, save_raw: bool, skip_bad: bool,
             progress, log, run, inputs, emit) -> list[Path]:
    """:func:`predict` inside the output folder's lock, where an earlier result is replaced
    whole (``out`` None: verdicts only)."""
    if out is None:
        writer = PredictionRows(t)
    else:
        from ssimae.cluster.ray_scoring import STATE_DIR  # a Ray job's journal of the earlier result

        if remove_previous_result(out, extra=(STATE_DIR,)):
            log(f"replacing the earlier result in {printable(str(out))} (its files removed; other files kept)")
        writer = PredictionWriter(out, t, save_raw)
    rels = dict(files)
    with progress_display(total=len(files), desc="predicting", enabled=progress) as bar:
        for scored in detector.predict_files([f for f, _ in files], t, name, skip_bad=skip_bad):
            if scored.error is not None:
                print(f"ssimae: skipping {printable(str(scored.error))}", file=sys.stderr)
                writer.skip(scored.path, scored.error.problem)
            else:
                writer.add(scored.path, rels[scored.path], scored.image, scored.prediction)
            bar.update()
    for row in writer.final_records() if emit is not None else ():
        emit(row)
    if out is None:
        log(writer.said(inputs, detector, threshold))
        return writer.written
    writer.finish_predict(run, inputs, detector, name, threshold, log)
    return writer.written
