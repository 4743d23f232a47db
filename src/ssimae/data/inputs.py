"""The images a command is given: files, folders (searched recursively) and list files, each
with the relative name its outputs get."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePath

from ssimae.data.datasets import walk_images
from ssimae.errors import SsimaeError, printable


LIST_SUFFIXES = (".txt", ".lst")  # an input file with one of these names is a list of image paths


def read_image_list(path: Path) -> list[tuple[Path, PurePath]]:
    """The images of a list file (one path per line; blank lines and lines starting with #
    skipped; relative paths are relative to the list file's folder), each with its output
    name: its path relative to that folder (without suffix), or its stem for a file
    outside it. SsimaeError naming the entry (and the list's line) for a missing one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SsimaeError(f"cannot read the list of images ({getattr(err, 'strerror', None) or err})", path) from None
    base, found = path.parent, []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        f = Path(os.path.normpath(base / entry))  # "../x.png" leaves the folder: named by its stem
        if not f.is_file():
            raise SsimaeError(f"no such image file (line {number} of the list {path})", f)
        try:
            rel = f.relative_to(base).with_suffix("")
        except ValueError:
            rel = PurePath(f.stem)
        found.append((f, PurePath(rel)))
    if not found:
        raise SsimaeError("the list names no images", path)
    return found


def collect_inputs(inputs: list[str | os.PathLike], exclude: str | os.PathLike | None = None,
                   reserved: tuple[str, ...] = ()) -> list[tuple[Path, PurePath]]:
    """Images to predict (folders searched recursively, image files, list files:
    :func:`read_image_list`), each with its safe output name (a relative path without suffix:
    :func:`output_names`, mirroring its path under the input folder where that is safe).

    Files under ``exclude`` (the output folder, when it lies inside an input folder) are not
    inputs: a second run does not predict the first one's heat maps. A file named more than
    once (by a list, two inputs, or a symbolic link) is one input, where it was first named:
    one row, one set of outputs."""
    found: list[tuple[Path, PurePath]] = []
    skip = None if exclude is None else os.path.realpath(exclude)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if skip is not None and os.path.realpath(p) == skip:
                raise SsimaeError("the output folder is this input folder; choose another --out", p)
            files = [f for f in walk_images(p) if skip is None or not os.path.realpath(f).startswith(skip + os.sep)]
            if not files:
                raise SsimaeError("no images in this folder", p)
            found += [(f, _without_suffix(f.relative_to(p))) for f in files]
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            found += read_image_list(p)
        elif p.is_file():
            found.append((p, _without_suffix(PurePath(p.name))))
        else:
            raise SsimaeError("no such file or folder", p)
    return output_names(_first_of_each(found), reserved)


def _first_of_each(found: list[tuple[Path, PurePath]]) -> list[tuple[Path, PurePath]]:
    """``found`` with each real file (:func:`os.path.realpath`) kept where it first occurs."""
    seen: set[str] = set()
    kept = []
    for f, rel in found:
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            kept.append((f, rel))
    return kept


NAME_BYTES = 100  # longest output name part (UTF-8 bytes) before "_overlay.png" and the like
_UNSAFE = set('\\/:*?"<>|')  # not allowed in a file name on some file systems


def output_names(found: list[tuple[Path, PurePath]], reserved: tuple[str, ...] = ()) -> list[tuple[Path, PurePath]]:
    """Each input file with a safe, unique output name, derived from (never trusting) its
    path relative to its input folder (without suffix):

    - every part made printable (:func:`ssimae.errors.printable`: control characters and bytes
      that are not UTF-8 as ``\\xNN``), characters a file system may refuse (``\\ / : * ? " < > |``)
      as ``_``; a part that is empty, ``.`` or ``..`` becomes ``_``, so nothing leaves the output folder;
    - a part longer than :data:`NAME_BYTES` bytes is cut and given a short hash of the whole path;
    - a first part among ``reserved`` (the output folder's own names, e.g. ``thumbs``), and names
      that clash (case-insensitively, as on macOS and Windows) get ``-<hash>`` of their path.
    """
    out, seen = [], set()
    for f, rel in found:
        parts = [safe_part(part, f) for part in rel.parts] or ["_"]
        if parts[0].lower() in {r.lower() for r in reserved}:
            parts[0] += "-" + _short_hash(f)
        name = PurePath(*parts)
        if name.as_posix().lower() in seen:
            name = name.with_name(f"{name.name}-{_short_hash(f)}")
        seen.add(name.as_posix().lower())
        out.append((f, name))
    return out


def safe_part(part: str, source: str | os.PathLike) -> str:
    """One part of an output name made safe (see :func:`output_names`); ``source`` seeds the
    hash of a part that is cut."""
    text = "".join("_" if ch in _UNSAFE else ch for ch in printable(part))
    if text in ("", ".", ".."):
        return "_"
    if len(text.encode("utf-8")) > NAME_BYTES:
        text = text.encode("utf-8")[:NAME_BYTES - 9].decode("utf-8", "ignore") + "-" + _short_hash(source)
    return text


def _short_hash(path: str | os.PathLike) -> str:
    """8 hex digits of the SHA-1 of a path's bytes."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()[:8]


def _without_suffix(rel: PurePath) -> PurePath:
    """``crack/000.png`` -> ``crack/000`` (the last part's text before its last dot; ``..png`` -> ``.``)."""
    name = rel.name
    stem = name[:name.rindex(".")] if "." in name[1:] else name
    return rel.parent / stem if stem not in ("", ".", "..") else PurePath(*rel.parts[:-1], "_" + stem)
