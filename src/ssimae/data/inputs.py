"""The images a command is given: files and folders (searched recursively), each with the
relative name its outputs get."""
from __future__ import annotations

import os
from pathlib import Path, PurePath

from ssimae.data.datasets import walk_images
from ssimae.errors import SsimaeError


def collect_inputs(inputs: list[str | os.PathLike], exclude: str | os.PathLike | None = None
                   ) -> list[tuple[Path, PurePath]]:
    """Images to predict, each with its output-relative path (without suffix).

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
