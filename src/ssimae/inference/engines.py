"""The engines that score images: torch (:class:`ssimae.inference.detector.Detector`, a run
folder or checkpoint) and onnx (:class:`ssimae.inference.onnx_detector.OnnxDetector`, an
export; imports no torch)."""
from __future__ import annotations

import os

from ssimae.errors import SsimaeError


ENGINES = ("torch", "onnx")


def load_detector(run: str | os.PathLike, engine: str = "torch", device: str | None = None):
    """A :class:`ssimae.inference.detector.Detector` (engine "torch") or an
    :class:`ssimae.runtime.OnnxDetector` (engine "onnx"; imports no torch)."""
    if engine == "onnx":
        from ssimae.inference.onnx_detector import OnnxDetector

        return OnnxDetector.load(run)
    if engine != "torch":
        raise SsimaeError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    from ssimae.inference.detector import Detector

    return Detector.load(run, device)
