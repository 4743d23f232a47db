"""``ssimae fuse``: two or more trained runs fused into one (:mod:`ssimae.inference.fusion`),
calibrated on defect-free images, written into a locked folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ssimae.commands.evaluate import defect_free_images
from ssimae.errors import SsimaeError
from ssimae.inference.engines import load_detector
from ssimae.inference.fusion import calibrate_fusion, is_fusion, write_fused
from ssimae.io.folders import RunLock


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
    files = defect_free_images(sources[0], images, "calibrating a fusion", "--images")
    with RunLock(out, "ssimae fuse"):
        fused, n = calibrate_fusion(members, files, progress)
        write_fused(fused, sources, Path(out), n)
    s = fused.settings
    log(f"fused {' + '.join(m.title for m in members)} into {out}: calibrated on {n} defect-free images, "
        f"pixel threshold {s.threshold:.4g}, image threshold {s.image_threshold:.4g}")
    return fused
