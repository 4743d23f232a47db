"""The one error type users see: one line naming the file and what is wrong.

The command line prints ``ssimae: error: <message>`` for it and exits with status 2,
without a traceback. Library code raises it for bad input (files, folders, checkpoints);
programming errors stay ordinary exceptions.
"""
from __future__ import annotations

import os


class SsimaeError(Exception):
    """Bad input. ``str(err)`` is ``"<path>: <problem>"`` when a path is given (the path
    made printable: :func:`printable`)."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else printable(os.fsdecode(os.fspath(path)))
        super().__init__(problem if path is None else f"{self.path}: {problem}")


class BadArray(SsimaeError, ValueError):
    """An array given to the Python API that is not an image (wrong shape, type, range or
    values); a ValueError too, as the API's shape errors always were."""


def printable(text: str) -> str:
    """``text`` safe to print and to store as UTF-8: control characters (C0, DEL, C1) and the
    undecodable bytes of a file name (``os.fsdecode``'s surrogates) become ``\\xNN``; other
    characters are kept. A terminal shows it as it is, with no escape sequence run."""
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def one_line(err: BaseException, limit: int = 160) -> str:
    """The message of an exception on one line (whitespace runs joined, at most ``limit``
    characters), or its type's name when it has no message."""
    text = " ".join(str(err).split())
    return (text or type(err).__name__)[:limit]
