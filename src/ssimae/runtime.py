"""Inference without PyTorch, the documented entry point: ``from ssimae.runtime import OnnxDetector``
and ``python -m ssimae.runtime EXPORT INPUT... --out DIR``.

The detector lives in :mod:`ssimae.inference.onnx_detector` (numpy, scipy, scikit-image and
onnxruntime only, never torch); the command line is :func:`ssimae.cli.runtime.main`, which is
``ssimae predict --engine onnx`` for a machine without torch. Importing this module imports no
torch either (a test runs it where importing torch fails).
"""
from __future__ import annotations

from ssimae.inference.onnx_detector import (  # noqa: F401  (the public names of the runtime)
    FORMAT,
    INFO_FILE,
    METADATA_KEY,
    MODEL_FILE,
    NOISE_GENERATOR,
    VERSION,
    OnnxDetector,
    TorchCpuNormal,
    open_export,
    require,
)

__all__ = ["OnnxDetector", "TorchCpuNormal", "open_export", "main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m ssimae.runtime``: see :func:`ssimae.cli.runtime.main`."""
    from ssimae.cli.runtime import main as run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
