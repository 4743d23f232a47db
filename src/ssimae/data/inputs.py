"""The images a command is given: files, folders (searched recursively) and list files, each
with the relative name its outputs get."""
from __future__ import annotations

import os
from pathlib import Path, PurePath

from ssimae.data.datasets import walk_images
from ssimae.errors import SsimaeError


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


def collect_inputs(inputs: list[str | os.PathLike], exclude: str | os.PathLike | None = None
                   ) -> list[tuple[Path, PurePath]]:
    """Images to predict, each with its output-relative path (without suffix). An input is a
    folder (searched recursively), an image file, or a list file (:func:`read_image_list`).

    Files under ``exclude`` (the output folder, when it lies inside an input folder) are not
    inputs: a second run does not predict the first one's heat maps."""
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
            found += [(f, f.relative_to(p).with_suffix("")) for f in files]
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            found += read_image_list(p)
        elif p.is_file():
            found.append((p, PurePath(p.stem)))
        else:
            raise SsimaeError("no such file or folder", p)
    seen: dict[PurePath, Path] = {}
    for f, rel in found:
        if rel in seen:
            raise SsimaeError(f"two inputs map to the same output name {rel} (also {seen[rel]})", f)
        seen[rel] = f
    return found
