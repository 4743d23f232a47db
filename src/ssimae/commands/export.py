"""``ssimae export``: a run as an ONNX model for the torch-free runtime, written into a locked folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ssimae.commands.evaluate import defect_free_images
from ssimae.inference.export import export_onnx, exportable
from ssimae.inference.fusion import export_fused, is_fusion, read_fusion
from ssimae.io.folders import RunLock
from ssimae.runs.checkpoint import Run


def export(run: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
           good: Sequence[str | os.PathLike] | None = None) -> Path:
    """Write ``out``/model.onnx and ``out``/ssimae.json (:func:`ssimae.inference.export.export_onnx`)
    while holding ``out``; returns the ONNX file's path. The run is read (and refused while
    training, or without a threshold) before ``out`` is made; ``int8``: quantize the graph,
    calibrated on defect-free images (:func:`int8_calibration_images`), also found before any work.
    A fused run (``ssimae fuse``) exports each member into ``out``/members/k; returns its fusion.json."""
    if is_fusion(run):
        runs = [exportable(Path(run) / rel) for rel in read_fusion(Path(run))["members"]]
        images = [int8_calibration_images(m, good) if int8 else None for m in runs]
        with RunLock(out, "ssimae export"):
            return export_fused(run, Path(out), lambda k, dst: export_onnx(runs[k], dst, int8_images=images[k]))
    run = exportable(run)
    images = int8_calibration_images(run, good) if int8 else None
    with RunLock(out, "ssimae export"):
        return export_onnx(run, out, int8_images=images)


def int8_calibration_images(run: str | os.PathLike | Run, good: Sequence[str | os.PathLike] | None = None) -> list:
    """The defect-free images that calibrate an int8 export: the files of ``good`` (folders or
    files), else the run's own validation images (:func:`ssimae.commands.evaluate.defect_free_images`)."""
    return defect_free_images(run, good, "int8 calibration", "--good")
