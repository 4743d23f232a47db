"""The torch device a run trains or scores on: one rule for ``--device`` everywhere."""
from __future__ import annotations

import torch

from ssimae.errors import SsimaeError


def pick_device(name: str | None = None) -> torch.device:
    """'auto'/None -> CUDA if available, else CPU; otherwise the named device (SsimaeError
    when it does not exist or is not available here, e.g. cuda on a machine without CUDA)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SsimaeError(f"--device: unknown device {name!r} (expected auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SsimaeError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SsimaeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise SsimaeError(f"--device {name}: MPS is not available here; use --device cpu or auto")
    return device
