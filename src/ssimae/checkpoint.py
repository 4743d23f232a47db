"""Checkpoints: everything ``evaluate`` and ``predict`` need, in one file, written atomically.

A checkpoint is a dict saved with ``torch.save``; it holds only tensors and plain
Python values (the configuration as JSON text), so it is loaded with
``torch.load(weights_only=True)``, which never executes code from the file.
Keys: format, version, config (JSON), model (state dict), optimizer (state dict or
absent), epoch, step, threshold (float or None), rng (torch RNG state), finished.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from ssimae.errors import SsimaeError

FORMAT = "ssimae-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "model.pt"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a
    crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | os.PathLike, *, config: dict, model: dict, optimizer: dict | None = None,
                    epoch: int = 0, step: int = 0, threshold: float | None = None,
                    finished: bool = False, extra: dict | None = None) -> None:
    """Save a checkpoint atomically (temporary file + rename)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(config, sort_keys=True),
        "model": model,
        "epoch": int(epoch),
        "step": int(step),
        "threshold": None if threshold is None else float(threshold),
        "finished": bool(finished),
        "rng": torch.get_rng_state(),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    if extra:
        payload["extra"] = json.dumps(extra, sort_keys=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(run: str | os.PathLike) -> Path:
    """A run folder (-> its model.pt) or a checkpoint file -> the checkpoint file path."""
    p = Path(run)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.exists():
            raise SsimaeError(f"no {CHECKPOINT_NAME} in this run folder (was training started?)", run)
    elif not p.exists():
        raise SsimaeError("no such run folder or checkpoint file", run)
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; returns it with ``config`` parsed into a dict.

    Corrupt, truncated or foreign files raise :class:`SsimaeError` naming the file.
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SsimaeError(f"not a readable checkpoint (corrupt, truncated or not a torch file: {first[:120]})", path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SsimaeError("not an ssimae checkpoint (it lacks the ssimae format marker)", path)
    if ckpt.get("version") != VERSION:
        raise SsimaeError(f"checkpoint version {ckpt.get('version')} is not supported (expected {VERSION})", path)
    try:
        ckpt["config"] = json.loads(ckpt["config"])
        ckpt["extra"] = json.loads(ckpt["extra"]) if "extra" in ckpt else {}
        if not isinstance(ckpt["model"], dict):
            raise TypeError("model weights are not a state dict")
    except (KeyError, TypeError, ValueError) as e:
        raise SsimaeError(f"damaged ssimae checkpoint ({e})", path) from None
    return ckpt
