"""Sliding-window reconstruction of whole images (paper, Sec. 4.2).

The autoencoder sees 128x128 patches. A test image is covered by patches at a stride of
30 px (the paper's choice: a stride of 128 leaves striding artefacts); the last row and
column of patches are moved flush with the bottom and right borders so every pixel is
covered; overlapping outputs are averaged. Patches go through the network in batches.

A fully convolutional network (``inpaint``, ``draem``; beyond the paper) needs no window:
:func:`whole_image` runs it once over the whole image (padded to a multiple of its stride),
cut into large tiles that overlap by its receptive field only above a size bound.

This module imports no torch: :func:`sliding_window` assembles numpy arrays (the ONNX
runtime, :mod:`ssimae.runtime`) and torch tensors (:class:`ssimae.inference.detector.Detector`)
with the same code, importing torch only when it is given a tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ssimae.errors import SsimaeError

PATCH_SIZE = 128  # Table 1 input size; Conv9 (8x8 kernel, no padding) fixes it
STRIDE = 30  # Sec. 4.2
# What scoring one image may cost (documented ceilings: docs/commands.md, "Limits"), checked
# before any work (ssimae.core.preprocess.Preprocess.check_cost): its pixels, as given and
# after the resize (its maps are held at both resolutions, about 150 bytes a pixel at the
# peak), and its patches through the network (a 4096 x 4096 image at the paper's stride: 17,956).
MAX_PIXELS = 4_096 * 4_096
MAX_PATCHES = 32_768


def patch_starts(length: int, patch: int = PATCH_SIZE, stride: int = STRIDE) -> list[int]:
    """Start offsets of the patches along one axis of ``length`` >= ``patch`` pixels:
    0, stride, 2 * stride, ... and finally ``length - patch`` so the border is covered."""
    if length < patch:
        raise ValueError(f"axis of {length} px is shorter than the {patch} px patch; pad the image first")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def patch_count(height: int, width: int, patch: int = PATCH_SIZE, stride: int = STRIDE) -> int:
    """How many patches :func:`sliding_window` sends through the network for an image of
    ``height`` x ``width`` pixels (padded to at least a patch first), without listing them:
    ``len(patch_starts(H)) * len(patch_starts(W))``."""
    def along(length: int) -> int:
        span = max(length, patch) - patch
        return span // stride + 1 + (1 if span % stride else 0)

    return along(height) * along(width)


def coverage(height: int, width: int, patch: int = PATCH_SIZE, stride: int = STRIDE) -> np.ndarray:
    """How many patches cover each pixel: (H, W) float32 array, all >= 1."""
    rows = np.zeros(height, np.float32)
    cols = np.zeros(width, np.float32)
    for r in patch_starts(height, patch, stride):
        rows[r:r + patch] += 1
    for c in patch_starts(width, patch, stride):
        cols[c:c + patch] += 1
    return rows[:, None] * cols[None, :]


def is_torch_tensor(a: Any) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(a).__module__.startswith("torch")


def sliding_window(image, fn: Callable, patch: int = PATCH_SIZE, stride: int = STRIDE, batch_size: int = 64):
    """Apply ``fn`` to every patch of ``image`` and average the overlapping outputs.

    image: (H, W) gray or (C, H, W) multi-channel float numpy array or torch tensor (on the
    device ``fn`` runs on) with H, W >= ``patch``.
    fn: (B, C_in, patch, patch) -> (B, C_out, patch, patch) of the same kind, e.g. the
    autoencoder; C_in = 1 for an (H, W) image.
    Returns (C_out, H, W) of the kind of ``fn``'s output: at each pixel the mean of ``fn``'s
    outputs over all patches covering it. Patches are fed in row-major order.
    """
    return sliding_window_many([image], fn, patch, stride, batch_size)[0]


def sliding_window_many(images: Sequence, fn: Callable, patch: int = PATCH_SIZE, stride: int = STRIDE,
                        batch_size: int = 64) -> list:
    """:func:`sliding_window` of several images (each (H_i, W_i), or (C, H_i, W_i) with the
    same C; sizes may differ; all numpy arrays or all torch tensors), their patches sent
    through ``fn`` together in batches of ``batch_size`` (a batch may hold patches of several
    images). Returns one (C_out, H_i, W_i) array or tensor per image."""
    if images and is_torch_tensor(images[0]):
        import torch

        stack, zeros = torch.stack, lambda shape, like: torch.zeros(shape, dtype=like.dtype, device=like.device)
        with torch.no_grad():
            return _assemble(images, fn, patch, stride, batch_size, stack, zeros)
    return _assemble(images, fn, patch, stride, batch_size, np.stack, lambda shape, like: np.zeros(shape, like.dtype))


def _assemble(images, fn, patch, stride, batch_size, stack, zeros) -> list:
    """The loop of :func:`sliding_window_many`, with the array library's ``stack`` and ``zeros``."""
    positions = [(k, r, c) for k, im in enumerate(images)
                 for r in patch_starts(im.shape[-2], patch, stride) for c in patch_starts(im.shape[-1], patch, stride)]
    outs: list = [None] * len(images)
    for i in range(0, len(positions), batch_size):
        chunk = positions[i:i + batch_size]
        batch = stack([images[k][..., r:r + patch, c:c + patch] for k, r, c in chunk])
        if batch.ndim == 3:  # (H, W) images: one channel
            batch = batch[:, None]
        result = fn(batch)
        for (k, r, c), y in zip(chunk, result):
            if outs[k] is None:
                outs[k] = zeros((result.shape[1], *images[k].shape[-2:]), result)
            outs[k][:, r:r + patch, c:c + patch] += y
    return [_divide(out, coverage(*im.shape[-2:], patch, stride)) for out, im in zip(outs, images)]


def _divide(out, cov: np.ndarray):
    """``out`` (C, H, W) divided by the coverage (H, W), in ``out``'s library, device and dtype."""
    if is_torch_tensor(out):
        import torch

        return out / torch.from_numpy(cov).to(out.device, out.dtype)
    return out / cov.astype(out.dtype)


# --- whole-image inference of fully convolutional networks -------------------------------------

MIN_TILE = PATCH_SIZE  # smallest side of a large tile (InferenceSettings.tile_size)


@dataclass(frozen=True)
class Geometry:
    """What whole-image inference needs to know of a fully convolutional network.

    multiple: the network takes inputs whose sides are multiples of it (its total stride,
    e.g. 8 for a U-Net of 4 levels). reach: the largest distance (px, along an axis) between
    an output pixel and an input pixel it depends on (its receptive field spans about
    ``2 * reach`` px). Tiles of a large image overlap by ``2 * margin`` >= ``2 * reach``, so
    every output pixel a tile keeps saw all of its inputs (and none of the zero padding of
    the tile's borders)."""

    multiple: int
    reach: int

    @property
    def margin(self) -> int:
        """Pixels a tile drops at each inner border: ``reach`` rounded up to a multiple of
        ``multiple`` (so tiles start on the network's pooling grid)."""
        return round_up(self.reach, self.multiple)

    def tile(self, size: int) -> int:
        """The largest tile side <= ``size`` that is a multiple of ``multiple`` and keeps
        at least ``multiple`` pixels between its two margins."""
        return max(size // self.multiple * self.multiple, 2 * self.margin + self.multiple)


def check_whole(tiling: str, geometry: Geometry | None, title: str) -> None:
    """SsimaeError unless a model of ``geometry`` (None: not fully convolutional) can be scored
    with ``tiling`` ("window" or "whole")."""
    if tiling == "whole" and geometry is None:
        raise SsimaeError(f"{title} is not fully convolutional: it scores 128x128 patches with the sliding "
                          f"window (--tiling window), not whole images")


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` >= ``n``."""
    return -(-n // multiple) * multiple


def mirror_index(length: int, target: int) -> np.ndarray:
    """Indices 0..length-1 continued to ``target`` entries by mirroring with the edge pixel
    repeated (numpy's "symmetric" padding, :func:`ssimae.core.preprocess.pad_to_patch`'s)."""
    return np.pad(np.arange(length), (0, target - length), mode="symmetric")


def tile_spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of ``length`` px: (start, stop) of each tile's input and
    (keep_from, keep_to) of the output it keeps; the kept parts partition [0, length).
    One tile when ``length <= tile``; else tiles of ``tile`` px at steps of at most
    ``tile - 2 * margin`` (the last flush with the end), each pair cut in the middle of its
    overlap, so a kept pixel lies at least ``margin`` px from its tile's inner borders.
    When ``length``, ``tile`` and ``margin`` are multiples of the network's stride, so are
    the starts (tiles on its pooling grid)."""
    if length <= tile:
        return [(0, length, 0, length)]
    step = tile - 2 * margin
    if step < 1:
        raise ValueError(f"a tile of {tile} px leaves nothing between margins of {margin} px")
    starts = list(range(0, length - tile, step)) + [length - tile]
    cuts = [0] + [(a + b + tile) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return [(s, s + tile, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


def whole_image(image, fn: Callable, geometry: Geometry, tile: int, masks_for: Callable | None = None):
    """A fully convolutional network's output for a whole image, in one pass per tile.

    image: (H, W) or (C, H, W) float numpy array or torch tensor (on ``fn``'s device), padded
    on the bottom and right to multiples of ``geometry.multiple`` by mirroring (as
    :func:`ssimae.core.preprocess.pad_to_patch` pads). Images with a side above ``tile`` (made
    a valid tile side by :meth:`Geometry.tile`) are cut into overlapping tiles
    (:func:`tile_spans`). masks_for: (H', W') of the padded image -> (P, 1, H', W') numpy
    masks of its passes (e.g. :func:`ssimae.core.masks.grid_masks`), or None; each tile gets
    its crop. fn: ((1, C, h, w) tile, (P, 1, h, w) masks or None) -> (1, C_out, h, w) of the
    image's kind. Returns (C_out, H, W)."""
    h, w = image.shape[-2:]
    size = (round_up(h, geometry.multiple), round_up(w, geometry.multiple))
    rows, cols = mirror_index(h, size[0]), mirror_index(w, size[1])
    masks = masks_for(*size) if masks_for is not None else None
    tile = geometry.tile(tile)
    if is_torch_tensor(image):
        import torch

        rows, cols = torch.as_tensor(rows, device=image.device), torch.as_tensor(cols, device=image.device)
        zeros = lambda shape, like: torch.zeros(shape, dtype=like.dtype, device=like.device)  # noqa: E731
        with torch.no_grad():
            return _whole(image[..., rows, :][..., cols], fn, geometry, tile, masks, zeros)[:, :h, :w]
    padded = image[..., rows, :][..., cols]
    return _whole(padded, fn, geometry, tile, masks, lambda shape, like: np.zeros(shape, like.dtype))[:, :h, :w]


def _whole(padded, fn, geometry: Geometry, tile: int, masks, zeros):
    """The tile loop of :func:`whole_image` on the padded image, with the library's ``zeros``."""
    out = None
    for r0, r1, keep_r0, keep_r1 in tile_spans(padded.shape[-2], tile, geometry.margin):
        for c0, c1, keep_c0, keep_c1 in tile_spans(padded.shape[-1], tile, geometry.margin):
            part = padded[..., r0:r1, c0:c1]
            y = fn(part[None] if part.ndim == 3 else part[None, None],
                   None if masks is None else masks[..., r0:r1, c0:c1])[0]
            if out is None:
                out = zeros((y.shape[0], *padded.shape[-2:]), y)
            out[:, keep_r0:keep_r1, keep_c0:keep_c1] = y[:, keep_r0 - r0:keep_r1 - r0, keep_c0 - c0:keep_c1 - c0]
    return out
