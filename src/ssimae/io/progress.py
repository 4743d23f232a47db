"""Progress of the long loops (train, evaluate, predict, calibrate, compare), in one place.

On a terminal (stderr is a tty) :func:`progress` is a tqdm bar, as it always was. Off a
terminal (a log file, a CI job, a pipe) a bar would print nothing readable, so it writes one
line every :data:`LINE_EVERY_S` seconds instead: ``<desc>: <done>/<total> <unit> (<share>),
<rate> <unit>/s``. Both answer the same calls: iteration, ``update(n)``, ``set_postfix``,
``close`` and ``with``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, TextIO

from tqdm import tqdm

LINE_EVERY_S = 30.0  # seconds between two progress lines off a terminal


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "images",
             enabled: bool = True, stream: TextIO | None = None, every: float | None = None,
             clock: Callable[[], float] = time.monotonic):
    """A progress display for a loop of ``total`` steps (or over ``iterable``): nothing when
    not ``enabled``, a tqdm bar when ``stream`` (default stderr) is a terminal, else a
    :class:`LineProgress` printing a line every ``every`` seconds (default :data:`LINE_EVERY_S`)."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=stream)
    return LineProgress(iterable, total, desc, unit, stream, LINE_EVERY_S if every is None else every, clock)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress as plain lines on ``stream``, at most one per ``every`` seconds of ``clock``."""

    def __init__(self, iterable, total: int | None, desc: str, unit: str, stream: TextIO, every: float,
                 clock: Callable[[], float]):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream, self.every, self.clock = stream, every, clock
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.n, self.postfix = 0, ""
        self.start = self.last = clock()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more steps done; a line when ``every`` seconds passed since the last one."""
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        """'predicting: 120/340 images (35%), 4.1 images/s' (and the postfix, e.g. the loss)."""
        rate = self.n / max(now - self.start, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return (f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{share}, {rate:.3g} {self.unit}/s"
                + (f", {self.postfix}" if self.postfix else ""))

    def set_postfix(self, **values) -> None:
        """Values shown at the end of the next line (as tqdm's ``set_postfix``)."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: the lines stay as written."""
