"""Preprocessing shared by training and inference: the optional resize of Sec. 4.2 and the
mirror padding of images smaller than a patch.

* :class:`Preprocess` resizes an image (to a fixed size or by a factor, anti-aliased); the
  paper downscales its 512x512 textures to 256x256 "to capture a more global context".
* :func:`pad_to_patch` pads images smaller than a patch by symmetric reflection.
* :func:`prepare_image` does both, from a file or an array.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.transform import resize

from ssimae.errors import SsimaeError
from ssimae.images import read_image
from ssimae.window import PATCH_SIZE


@dataclass(frozen=True)
class Preprocess:
    """Optional resize applied to every image before cropping (and before testing).

    size: fixed output (H, W), e.g. (256, 256) as in the paper for 512x512 textures.
    scale: factor on both sides, output ``max(1, round(H * scale)) x max(1, round(W * scale))``.
    At most one of them; neither means no resize. Resizing is bilinear
    (skimage.transform.resize, order=1, mode="reflect"), with Gaussian anti-aliasing when
    downscaling.
    """

    size: tuple[int, int] | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.scale is not None:
            raise SsimaeError("give a resize size or a scale factor, not both")
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise SsimaeError(f"resize size must be two positive integers (H, W), got {self.size}")
            object.__setattr__(self, "size", size)
        if self.scale is not None:
            if not float(self.scale) > 0:
                raise SsimaeError(f"scale factor must be positive, got {self.scale}")
            object.__setattr__(self, "scale", float(self.scale))

    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of an image after :meth:`apply`, for an input of shape (H, W)."""
        if self.size is not None:
            return self.size
        if self.scale is not None:
            return max(1, round(shape[0] * self.scale)), max(1, round(shape[1] * self.scale))
        return int(shape[0]), int(shape[1])

    def apply(self, img: np.ndarray) -> np.ndarray:
        """float (H, W) in [0, 1] -> float32 (H', W') in [0, 1], with (H', W') = output_shape."""
        img = np.asarray(img, dtype=np.float32)
        out = self.output_shape(img.shape)
        if out == img.shape:
            return img
        down = out[0] < img.shape[0] or out[1] < img.shape[1]
        res = resize(img, out, order=1, mode="reflect", anti_aliasing=down, preserve_range=True)
        return np.clip(res, 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for checkpoints: {"size": [H, W] or None, "scale": float or None}."""
        return {"size": None if self.size is None else list(self.size), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {"size", "scale"}
        if unknown:
            raise SsimaeError(f"unknown preprocessing settings: {', '.join(sorted(unknown))}")
        return cls(size=d.get("size"), scale=d.get("scale"))


def pad_to_patch(img: np.ndarray, patch: int = PATCH_SIZE) -> np.ndarray:
    """Pad (H, W) on the bottom and right to at least (patch, patch); larger sides unchanged.

    Padding mirrors the image including its edge pixel (numpy mode "symmetric": ... c b a | a b
    c ...), repeatedly if the image is less than half a patch. Returns the input itself when
    no padding is needed; dtype is kept.
    """
    h, w = img.shape
    ph, pw = max(0, patch - h), max(0, patch - w)
    if ph == 0 and pw == 0:
        return img
    return np.pad(img, ((0, ph), (0, pw)), mode="symmetric")


def prepare_image(source: str | os.PathLike | np.ndarray, preprocess: Preprocess, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """File or float (H, W) array in [0, 1] -> preprocessed, padded float32 (H'', W'')."""
    img = read_image(source) if isinstance(source, (str, os.PathLike)) else np.asarray(source, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"training images must be 2-D gray arrays, got shape {img.shape}")
    return pad_to_patch(preprocess.apply(img), patch_size)
