"""Sliding-window reconstruction of whole images (paper, Sec. 4.2).

The autoencoder sees 128x128 patches. A test image is covered by patches at a stride of
30 px (the paper's choice: a stride of 128 leaves striding artefacts); the last row and
column of patches are moved flush with the bottom and right borders so every pixel is
covered; overlapping outputs are averaged. Patches go through the network in batches.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ssimae.network import PATCH_SIZE

STRIDE = 30  # Sec. 4.2


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


def coverage(height: int, width: int, patch: int = PATCH_SIZE, stride: int = STRIDE) -> torch.Tensor:
    """How many patches cover each pixel: (H, W) float tensor, all >= 1."""
    rows = torch.zeros(height)
    cols = torch.zeros(width)
    for r in patch_starts(height, patch, stride):
        rows[r:r + patch] += 1
    for c in patch_starts(width, patch, stride):
        cols[c:c + patch] += 1
    return rows[:, None] * cols[None, :]


@torch.no_grad()
def sliding_window(image: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], patch: int = PATCH_SIZE,
                   stride: int = STRIDE, batch_size: int = 64) -> torch.Tensor:
    """Apply ``fn`` to every patch of ``image`` and average the overlapping outputs.

    image: (H, W) float tensor with H, W >= ``patch`` (on the device ``fn`` runs on).
    fn: (B, 1, patch, patch) -> (B, C, patch, patch), e.g. the autoencoder.
    Returns (C, H, W): at each pixel the mean of ``fn``'s outputs over all patches
    covering it.
    """
    return sliding_window_many([image], fn, patch, stride, batch_size)[0]


@torch.no_grad()
def sliding_window_many(images: Sequence[torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor],
                        patch: int = PATCH_SIZE, stride: int = STRIDE, batch_size: int = 64) -> list[torch.Tensor]:
    """:func:`sliding_window` of several images (each (H_i, W_i), sizes may differ), their
    patches sent through ``fn`` together in batches of ``batch_size`` (a batch may hold
    patches of several images). Returns one (C, H_i, W_i) tensor per image."""
    positions = [(k, r, c) for k, im in enumerate(images)
                 for r in patch_starts(im.shape[0], patch, stride) for c in patch_starts(im.shape[1], patch, stride)]
    outs: list[torch.Tensor | None] = [None] * len(images)
    for i in range(0, len(positions), batch_size):
        chunk = positions[i:i + batch_size]
        batch = torch.stack([images[k][r:r + patch, c:c + patch] for k, r, c in chunk]).unsqueeze(1)
        result = fn(batch)
        for (k, r, c), y in zip(chunk, result):
            if outs[k] is None:
                outs[k] = torch.zeros((result.shape[1], *images[k].shape), dtype=result.dtype, device=result.device)
            outs[k][:, r:r + patch, c:c + patch] += y
    return [o / coverage(*im.shape, patch, stride).to(o.device, o.dtype) for o, im in zip(outs, images)]
