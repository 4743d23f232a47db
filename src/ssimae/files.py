"""Atomic file writes (temporary file in the same folder + rename), shared by checkpoints,
reports, predictions and exports; imports no torch."""
from __future__ import annotations

import os
from pathlib import Path

from ssimae.errors import SsimaeError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a
    crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # disk full, read-only, a folder in the way: one line, the old file kept
        raise SsimaeError(f"cannot write file ({err.strerror or err})", path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
