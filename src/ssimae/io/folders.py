"""Output folders: checked before any work starts, and one writer at a time per run folder.

:func:`prepare_out_dir` makes the folder (or refuses a file, or a folder that cannot be
written) before training or scoring begins, so a bad ``--out`` costs nothing.
:class:`RunLock` holds ``<out>/.ssimae.lock`` (the writer's process id) while a run is
trained: a second training into the same folder is refused instead of mixing its files with
the first's. A lock left by a killed process (its pid is gone) is taken over, and the
temporary files such a process left behind (``.NAME.tmpPID``, see
:func:`ssimae.runs.checkpoint.atomic_write_bytes`) are removed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ssimae.errors import SsimaeError

LOCK_NAME = ".ssimae.lock"
_TMP = re.compile(r"^\..+\.tmp(\d+)$")  # the temporary files of the atomic writer


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create output folder ``path`` if needed; SsimaeError if it is a file or not writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SsimaeError("output folder is a file, not a folder", p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SsimaeError(f"cannot create output folder ({err.strerror or err})", p) from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise SsimaeError("output folder is not writable", p)
    return p


def _alive(pid: int) -> bool:
    """True if process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the atomic writer's temporary files in ``folder`` whose process is gone."""
    removed = []
    for entry in folder.iterdir():
        m = _TMP.match(entry.name)
        if m and entry.is_file() and not _alive(int(m.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class RunLock:
    """``with RunLock(out):`` holds the run folder ``out`` for this process (see module doc)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "RunLock":
        prepare_out_dir(self.folder)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise SsimaeError(f"another ssimae process (pid {pid}) is writing a run into this folder; "
                                      f"wait for it or choose another --out (remove {LOCK_NAME} if it is gone)",
                                      self.folder) from None
                self.path.unlink(missing_ok=True)  # left by a killed process
                continue
            except OSError as err:
                raise SsimaeError(f"cannot write the lock file ({err.strerror or err})", self.folder) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            remove_stale_temporaries(self.folder)
            return self
        raise SsimaeError(f"cannot take the lock file {LOCK_NAME}", self.folder)

    def __exit__(self, *exc) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
