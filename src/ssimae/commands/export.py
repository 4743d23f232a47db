"""``ssimae export``: a run as an ONNX model for the torch-free runtime, written into a locked folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ssimae.commands.evaluate import dataset_options
from ssimae.data.datasets import load_dataset
from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError
from ssimae.inference.export import export_onnx, exportable
from ssimae.inference.fusion import export_fused, is_fusion, read_fusion
from ssimae.inference.test_set import validation_images
from ssimae.io.folders import RunLock
from ssimae.runs.checkpoint import Run, load_run


def export(run: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
           good: Sequence[str | os.PathLike] | None = None) -> Path:
    """Write ``out``/model.onnx and ``out``/ssimae.json (:func:`ssimae.inference.export.export_onnx`)
    while holding ``out``; returns the ONNX file's path. The run is read (and refused while
    training, or without a threshold) before ``out`` is made; ``int8``: quantize the graph,
    calibrated on defect-free images (:func:`int8_calibration_images`), also found before any work.
    A fused run (``ssimae fuse``) exports each member into ``out``/members/k; returns its fusion.json."""
    if is_fusion(run):
        members = [Path(run) / rel for rel in read_fusion(Path(run))["members"]]
        runs = [exportable(m) for m in members]
        images = [int8_calibration_images(m, good) if int8 else None for m in runs]
        with RunLock(out, "ssimae export"):
            done = iter(images)
            return export_fused(run, Path(out), lambda src, dst: export_onnx(exportable(src), dst, int8_images=next(done)))
    run = exportable(run)
    images = int8_calibration_images(run, good) if int8 else None
    with RunLock(out, "ssimae export"):
        return export_onnx(run, out, int8_images=images)


def int8_calibration_images(run: str | os.PathLike | Run, good: Sequence[str | os.PathLike] | None = None) -> list:
    """The defect-free images that calibrate an int8 export: the files of ``good`` (folders or
    files), else the run's own validation images (the seeded split of its training images,
    as calibration chose its threshold on). SsimaeError when there are none."""
    if good:
        return [f for f, _ in collect_inputs(list(good))]
    loaded = load_run(run)
    root, options = dataset_options(loaded.settings.train.data)
    images = validation_images(load_dataset(root, **options, verify=False, log=None, progress=False), loaded.settings)
    if not images:
        raise SsimaeError("int8 calibration needs defect-free images and the run has no validation images; "
                          "give --good DIR", loaded.path)
    return images
