"""The hidden-cell masks of an inpainting model's test passes, in numpy (no torch): the same
masks for the torch engine and the ONNX runtime.

A pass hides one set of the cells of a square grid (cell side k, anchored at the top-left
corner, partial cells at the right and bottom borders); the cells are shuffled and dealt to
``sets`` disjoint sets in turn, so every pixel is hidden in exactly one pass per cell size.

* :func:`grid_masks`: the masks of a whole (padded) image, drawn from ``numpy.random.default_rng(seed)``
  (whole-image inference, :func:`ssimae.core.window.whole_image`); a large tile takes the
  crop of its image's masks, so tiling does not change them.
* :func:`grids_to_text` / :func:`masks_from_text`: the 128 x 128 masks of sliding-window
  inference (drawn by torch when the run was trained) written into an export's metadata as
  text, one hexadecimal digit per cell, and read back by the runtime.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_SETS = 16  # one hexadecimal digit per cell in an export's text


def cells(length: int, cell: int) -> int:
    """Cells of side ``cell`` along an axis of ``length`` px (the last one may be partial)."""
    return -(-length // cell)


def expand(grid: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    """(rows, cols) set index per cell -> (height, width) set index per pixel."""
    return np.repeat(np.repeat(grid, cell, 0), cell, 1)[:height, :width]


def set_masks(assign: np.ndarray, sets: int) -> np.ndarray:
    """(H, W) set index per pixel -> (sets, H, W) float32 masks, 1 where the pass hides a pixel."""
    return (assign[None] == np.arange(sets)[:, None, None]).astype(np.float32)


def grid_masks(height: int, width: int, cell_sizes: Sequence[int], sets: int, seed: int) -> np.ndarray:
    """The masks of a whole ``height`` x ``width`` image: (len(cell_sizes) * sets, 1, H, W)
    float32, one cell size's ``sets`` masks after the other; the cells of each size shuffled
    by one permutation of ``numpy.random.default_rng(seed)`` and dealt to the sets in turn."""
    rng = np.random.default_rng(seed)
    out = []
    for k in cell_sizes:
        rows, cols = cells(height, k), cells(width, k)
        grid = (rng.permutation(rows * cols) % sets).reshape(rows, cols)
        out.append(set_masks(expand(grid, k, height, width), sets))
    return np.concatenate(out)[:, None]


def grids_to_text(assignments: Sequence[np.ndarray], cell_sizes: Sequence[int]) -> list[str]:
    """(H, W) set maps, one per cell size (cells anchored at the top-left corner), as text:
    one hexadecimal digit per cell, row by row."""
    return ["".join(f"{v:x}" for v in np.asarray(a)[::k, ::k].ravel()) for a, k in zip(assignments, cell_sizes)]


def masks_from_text(texts: Sequence[str], cell_sizes: Sequence[int], sets: int, size: int) -> np.ndarray:
    """Inverse of :func:`grids_to_text` for ``size`` x ``size`` maps, as masks:
    (len(cell_sizes) * sets, 1, size, size) float32. ValueError for text that does not fit."""
    if len(texts) != len(cell_sizes):
        raise ValueError(f"{len(texts)} mask grids for {len(cell_sizes)} cell sizes")
    out = []
    for text, k in zip(texts, cell_sizes):
        n = cells(size, k)
        grid = np.array([int(ch, 16) for ch in text], dtype=np.int64)
        if grid.size != n * n or (grid.size and grid.max() >= sets):
            raise ValueError(f"a mask grid of cell size {k} must hold {n * n} digits below {sets}")
        out.append(set_masks(expand(grid.reshape(n, n), k, size, size), sets))
    return np.concatenate(out)[:, None]
