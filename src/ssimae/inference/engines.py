"""The engines that score images: torch (:class:`ssimae.inference.detector.Detector`, a run
folder or checkpoint) and onnx (:class:`ssimae.inference.onnx_detector.OnnxDetector`, an
export; imports no torch)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ssimae.core.residual import check_residual
from ssimae.errors import SsimaeError
from ssimae.runs.inference_settings import NO_THRESHOLD


ENGINES = ("torch", "onnx")


def is_export(source: str | os.PathLike) -> bool:
    """True for a folder written by ``ssimae export`` (model.onnx inside) or an .onnx file."""
    from ssimae.inference.fusion import MEMBERS_DIR, is_fusion
    from ssimae.inference.onnx_detector import MODEL_FILE

    path = Path(source)
    if is_fusion(path):  # a fused run is an export when its members are
        return is_export(path / MEMBERS_DIR / "0")
    return path.suffix.lower() == ".onnx" or (path / MODEL_FILE).is_file()


def pick_engine(source: str | os.PathLike, engine: str = "auto") -> str:
    """``engine``, or for "auto": "onnx" for an export (:func:`is_export`), else "torch"."""
    if engine == "auto":
        return "onnx" if is_export(source) else "torch"
    return engine


def load_detector(run: str | os.PathLike, engine: str = "auto", device: str | None = None,
                  threads: int | None = None):
    """A :class:`ssimae.inference.detector.Detector` (engine "torch") or an
    :class:`ssimae.runtime.OnnxDetector` (engine "onnx"; imports no torch; ``threads``:
    onnxruntime's intra-op threads, None for its default); "auto": by :func:`pick_engine`.
    A fused run (``ssimae fuse``) gives a :class:`ssimae.inference.fusion.FusedDetector`."""
    from ssimae.inference.fusion import FusedDetector, is_fusion

    engine = pick_engine(run, engine)
    if is_fusion(run):
        return FusedDetector.load(run, engine, device, threads)
    if engine == "torch" and is_export(run):
        raise SsimaeError("this is an export (ssimae export): score it with --engine onnx (or auto)", run)
    if engine == "onnx":
        from ssimae.inference.onnx_detector import OnnxDetector

        return OnnxDetector.load(run, threads)
    if engine != "torch":
        raise SsimaeError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    from ssimae.inference.detector import Detector

    return Detector.load(run, device)


def open_detector(run: str | os.PathLike, *, threshold: float | None = None, device: str | None = None,
                  residual: str | None = None, smooth: float | None = None, engine: str = "auto",
                  threads: int | None = None):
    """(detector, threshold in use, residual name) for ``predict``'s options, checked: a
    finite --threshold, a residual the model has, a threshold stored or given."""
    if threshold is not None and not math.isfinite(threshold):
        raise SsimaeError(f"--threshold must be a finite number, got {threshold}")
    detector = load_detector(run, engine, device, threads)
    if smooth is not None:
        detector = detector.with_settings(smooth=smooth)
    if residual is not None and residual != detector.default_residual and threshold is None:
        raise SsimaeError(f"the stored threshold belongs to the {detector.default_residual} residual; "
                          f"give --threshold for the {residual} residual", run)
    if residual is not None:
        check_residual(residual, detector.outputs)
    t = detector.threshold if threshold is None else threshold
    if t is None:
        raise SsimaeError(f"{NO_THRESHOLD}: finish it (ssimae train --resume), choose one (ssimae calibrate), "
                          "or pass --threshold", run)
    return detector, float(t), residual or detector.default_residual
