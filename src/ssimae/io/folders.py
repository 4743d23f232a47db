"""Output folders: checked before any work starts, and one writer at a time per run folder.

:func:`prepare_out_dir` makes the folder (or refuses a file, or a folder that cannot be
written) before training or scoring begins, so a bad ``--out`` costs nothing.
:class:`RunLock` holds ``<out>/.ssimae.lock`` (the writer's process id and command) while a
folder is written (train, calibrate, predict, evaluate, export, compare, demo): a second
writer is refused instead of mixing its files with the first's. A lock left by a killed
process (its pid is gone, or now belongs to another process:
:func:`ssimae.io.processes.tag_alive`) is taken over, and the temporary files dead writers
left behind (``.ssimae-tmp-PID:START-NAME``, see :func:`ssimae.io.files.atomic_write_bytes`)
are removed; no other file is ever removed.
"""
from __future__ import annotations

import os
from pathlib import Path

from ssimae.errors import SsimaeError, printable
from ssimae.io.files import TMP_PREFIX, stale_temporary
from ssimae.io.processes import process_tag, tag_alive

LOCK_NAME = ".ssimae.lock"


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


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the atomic writer's temporary files in ``folder`` and its subfolders whose
    writer is gone (killed mid-write: :func:`ssimae.io.files.stale_temporary`); nothing else."""
    removed = []
    for entry in folder.rglob(TMP_PREFIX + "*"):
        if stale_temporary(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def lock_holder(folder: str | os.PathLike) -> tuple[int, str] | None:
    """(pid, what) of another live process holding ``folder``'s lock (what: e.g. "ssimae
    train"), or None (no lock, a stale one, or this process's own)."""
    tag, what = RunLock(folder)._holder()
    if tag == process_tag() or not tag_alive(tag):
        return None
    return int(tag.partition(":")[0]), what


class RunLock:
    """``with RunLock(out, "ssimae predict"):`` holds the folder ``out`` for this process: every
    writer of a run folder or an output folder (train, calibrate, predict, evaluate, export,
    compare, demo) takes it. The lock file holds "<pid>:<start time> <what>"
    (:func:`ssimae.io.processes.process_tag`), so a second writer is refused with one line
    naming the holder, and a lock whose process is gone is taken over."""

    def __init__(self, folder: str | os.PathLike, what: str = "ssimae"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = " ".join(what.split())

    def _holder(self) -> tuple[str, str]:
        """(process tag, what) written in the lock file; ("", "") when unreadable."""
        try:
            first, _, rest = self.path.read_text().strip().partition(" ")
            return first, rest.strip()
        except (OSError, UnicodeDecodeError):
            return "", ""

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
                held = lock_holder(self.folder)
                if held is not None:
                    holder = printable(f"pid {held[0]}" + (f", {held[1]}" if held[1] else ""))
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
                f.write(f"{process_tag()} {self.what}\n")
            _HELD.add(self.key)
            remove_stale_temporaries(self.folder)
            return self
        raise SsimaeError(f"cannot take the lock file {LOCK_NAME}", self.folder)

    def __exit__(self, *exc) -> None:
        if self.nested:
            return
        _HELD.discard(self.key)
        if self._holder()[0] == process_tag():
            self.path.unlink(missing_ok=True)


_HELD: set[str] = set()  # folders this process holds (real paths)
