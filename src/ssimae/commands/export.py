"""``ssimae export``: a run as an ONNX model for the torch-free runtime, written into a locked folder."""
from __future__ import annotations

import os
from pathlib import Path

from ssimae.inference.export import export_onnx
from ssimae.io.folders import RunLock
from ssimae.runs.checkpoint import load_run


def export(run: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``out``/model.onnx and ``out``/ssimae.json (:func:`ssimae.inference.export.export_onnx`)
    while holding ``out``; returns the ONNX file's path. The run is read and checked before
    ``out`` is made."""
    run = load_run(run)
    with RunLock(out, "ssimae export"):
        return export_onnx(run, out)
