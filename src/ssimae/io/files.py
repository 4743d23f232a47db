"""Atomic file writes (temporary file in the same folder + rename), shared by checkpoints,
reports, predictions and exports; imports no torch."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ssimae.errors import SsimaeError
from ssimae.io.processes import process_tag, tag_alive

TMP_PREFIX = ".ssimae-tmp-"  # temporary files: .ssimae-tmp-PID:START-NAME (only these are ever cleaned up)


def temporary_path(path: Path) -> Path:
    """The temporary file :func:`atomic_write_bytes` writes before renaming it to ``path``:
    in the same folder, named after this process (:func:`ssimae.io.processes.process_tag`)."""
    return path.with_name(f"{TMP_PREFIX}{process_tag()}-{path.name}")


def stale_temporary(name: str) -> bool:
    """True if ``name`` is a temporary file of :func:`atomic_write_bytes` whose writer is gone
    (its pid no longer runs, or now belongs to another process)."""
    if not name.startswith(TMP_PREFIX):
        return False
    tag, sep, rest = name[len(TMP_PREFIX):].partition("-")
    return bool(sep and rest) and ":" in tag and not tag_alive(tag)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a
    crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    tmp = temporary_path(path)
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
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. a name too long: there is no temporary file to remove
            pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj):
    """``obj`` (nested dicts, lists, tuples, numpy scalars) ready for strict JSON: NaN and
    +-inf become None, numpy numbers plain Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, int)) or obj is None:
        return obj
    if hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
