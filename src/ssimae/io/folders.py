"""Output folders: checked before any work starts, and one writer at a time per run folder.

:func:`prepare_out_dir` makes the folder (or refuses a file, or a folder that cannot be
written) before training or scoring begins, so a bad ``--out`` costs nothing.
:class:`RunLock` holds ``<out>/.ssimae.lock`` (the writer's process id and command) while a
folder is written (train, calibrate, predict, evaluate, export, compare, demo): a second
writer is refused instead of mixing its files with the first's. A lock left by a killed
process (its pid is gone) is taken over, and the temporary files such a process left behind
(``.NAME.tmpPID``, see :func:`ssimae.io.files.atomic_write_bytes`) are removed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ssimae.errors import SsimaeError, printable

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
    """Remove the atomic writer's temporary files in ``folder`` and its subfolders whose
    process is gone (a writer killed mid-write)."""
    removed = []
    for entry in folder.rglob(".*.tmp*"):
        m = _TMP.match(entry.name)
        if m and entry.is_file() and not _alive(int(m.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def lock_holder(folder: str | os.PathLike) -> tuple[int, str] | None:
    """(pid, what) of another live process holding ``folder``'s lock (what: e.g. "ssimae
    train"), or None (no lock, a stale one, or this process's own)."""
    pid, what = RunLock(folder)._holder()
    if pid is None or pid == os.getpid() or not _alive(pid):
        return None
    return pid, what


class RunLock:
    """``with RunLock(out, "ssimae predict"):`` holds the folder ``out`` for this process: every
    writer of a run folder or an output folder (train, calibrate, predict, evaluate, export,
    compare, demo) takes it. The lock file holds "<pid> <what>", so a second writer is refused
    with one line naming the holder."""

    def __init__(self, folder: str | os.PathLike, what: str = "ssimae"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = " ".join(what.split())

    def _holder(self) -> tuple[int | None, str]:
        """(pid, what) written in the lock file; (None, "") when unreadable."""
        try:
            first, _, rest = self.path.read_text().strip().partition(" ")
            return (int(first) or None), rest.strip()
        except (OSError, ValueError):
            return None, ""

    def _owner(self) -> int | None:
        return self._holder()[0]

    def __enter__(self) -> "RunLock":
        prepare_out_dir(self.folder)
        self.key = os.path.realpath(self.folder)
        self.nested = self.key in _HELD  # this process holds it already (demo -> compare): nothing to take
        if self.nested:
            return self
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, what = self._holder()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    holder = printable(f"pid {pid}" + (f", {what}" if what else ""))
                    raise SsimaeError(f"another ssimae process ({holder}) is writing into this folder; "
                                      f"wait for it or choose another folder (remove {LOCK_NAME} if it is gone)",
                                      self.folder) from None
                try:
                    self.path.unlink(missing_ok=True)  # left by a killed process
                except OSError as err:  # e.g. a folder of that name
                    raise SsimaeError(f"cannot take the lock file {LOCK_NAME} ({err.strerror or err})",
                                      self.folder) from None
                continue
            except OSError as err:
                raise SsimaeError(f"cannot write the lock file ({err.strerror or err})", self.folder) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {self.what}\n")
            _HELD.add(self.key)
            remove_stale_temporaries(self.folder)
            return self
        raise SsimaeError(f"cannot take the lock file {LOCK_NAME}", self.folder)

    def __exit__(self, *exc) -> None:
        if self.nested:
            return
        _HELD.discard(self.key)
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


_HELD: set[str] = set()  # folders this process holds (real paths)
