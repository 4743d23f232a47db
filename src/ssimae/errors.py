"""The one error type users see: one line naming the file and what is wrong.

The command line prints ``ssimae: error: <message>`` for it and exits with status 2,
without a traceback. Library code raises it for bad input (files, folders, checkpoints);
programming errors stay ordinary exceptions.
"""
from __future__ import annotations

import os


class SsimaeError(Exception):
    """Bad input. ``str(err)`` is ``"<path>: <problem>"`` when a path is given."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(problem if path is None else f"{self.path}: {problem}")


def one_line(err: BaseException, limit: int = 160) -> str:
    """The message of an exception on one line (whitespace runs joined, at most ``limit``
    characters), or its type's name when it has no message."""
    text = " ".join(str(err).split())
    return (text or type(err).__name__)[:limit]
