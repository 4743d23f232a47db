"""Sliding-window reconstruction of whole images (paper, Sec. 4.2).

The autoencoder sees 128x128 patches. A test image is covered by patches at a stride of
30 px (the paper's choice: a stride of 128 leaves striding artefacts); the last row and
column of patches are moved flush with the bottom and right borders so every pixel is
covered; overlapping outputs are averaged. Patches go through the network in batches.

This module imports no torch: :func:`sliding_window` assembles numpy arrays (the ONNX
runtime, :mod:`ssimae.runtime`) and torch tensors (:class:`ssimae.inference.detector.Detector`)
with the same code, importing torch only when it is given a tensor.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

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
