"""Which process wrote a lock or a temporary file, and whether that process still runs.

A process is named by its pid and its start time (``/proc/PID/stat``, field 22, in clock ticks
since boot; :func:`process_tag`): a pid reused by another process after the writer died has
another start time, so its lock and temporary files count as left by a dead writer. Without
``/proc`` (not Linux) the start time is unknown ("0") and a pid that exists counts as alive.
"""
from __future__ import annotations

import os


def start_time(pid: int) -> str | None:
    """Process ``pid``'s start time as ``/proc/PID/stat`` gives it; None if the process is gone
    or there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: count fields after the last ")"
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode("ascii") if len(fields) > 19 else None


def process_tag(pid: int | None = None) -> str:
    """"PID:START" of process ``pid`` (default: this one); START is "0" where unknown."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid) or '0'}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return isinstance(pid, int) and 0 < pid < 2**31  # exists, owned by another user
    return True


def _looks_like_ssimae(pid: int) -> bool:
    """True if process ``pid``'s command line mentions ssimae (or cannot be read: no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ssimae" in f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")
    except OSError:
        return True


def tag_alive(tag: str) -> bool:
    """True if the process named by ``tag`` ("PID:START" of :func:`process_tag`, or a bare
    "PID" written by hand or by an older version) still runs. A bare pid counts as alive only
    while it belongs to a process whose command line mentions ssimae; "PID:0" (start time
    unknown when written) while the pid exists."""
    pid_text, _, start = tag.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0 or not _exists(pid):
        return False
    if not start:
        return _looks_like_ssimae(pid)
    now = start_time(pid)
    return start == "0" or now is None or now == start
