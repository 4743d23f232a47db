"""``ssimae fuse``: two or more trained runs fused into one (:mod:`ssimae.inference.fusion`),
calibrated on defect-free images, written into a locked folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ssimae.commands.evaluate import dataset_options
from ssimae.data.datasets import load_dataset
from ssimae.data.inputs import collect_inputs
from ssimae.errors import SsimaeError
from ssimae.inference.engines import is_export, load_detector
from ssimae.inference.fusion import calibrate_fusion, is_fusion, write_fused
from ssimae.inference.test_set import validation_images
from ssimae.io.folders import RunLock
from ssimae.runs.checkpoint import load_run


def fuse(runs: Sequence[str | os.PathLike], out: str | os.PathLike, *, images: Sequence[str | os.PathLike] | None = None,
         device: str | None = None, progress: bool = True, log=print):
    """Fuse ``runs`` (run folders or exports, read before any work) into ``out``, calibrated on
    the files of ``images`` (folders or files of defect-free images), else on the first run's
    validation images; returns the :class:`ssimae.inference.fusion.FusedDetector`."""
    sources = [Path(r) for r in runs]
    if len(sources) < 2:
        raise SsimaeError("ssimae fuse needs two or more runs")
    for src in sources:
        if is_fusion(src):
            raise SsimaeError("is a fused run already: fuse its members (members/0, ...) instead", src)
        if not src.is_dir():
            raise SsimaeError("not a run folder or an export", src)
    members = [load_detector(src, "auto", device) for src in sources]
    files = [f for f, _ in collect_inputs(list(images))] if images else run_validation_images(sources[0])
    with RunLock(out, "ssimae fuse"):
        fused, n = calibrate_fusion(members, files, progress)
        write_fused(fused, sources, Path(out), n)
    s = fused.settings
    log(f"fused {' + '.join(m.title for m in members)} into {out}: calibrated on {n} defect-free images, "
        f"pixel threshold {s.threshold:.4g}, image threshold {s.image_threshold:.4g}")
    return fused


def run_validation_images(run: Path) -> list:
    """The validation images of a run folder (the seeded split of its training images);
    SsimaeError for an export or a run without any."""
    if is_export(run):
        raise SsimaeError("an export does not know its training images: give --images DIR of defect-free images", run)
    loaded = load_run(run)
    root, options = dataset_options(loaded.settings.train.data)
    files = validation_images(load_dataset(root, **options, verify=False, log=None, progress=False), loaded.settings)
    if not files:
        raise SsimaeError("the run has no validation images to calibrate the fusion on: give --images DIR", run)
    return files
