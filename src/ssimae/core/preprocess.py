"""Preprocessing shared by training and inference: how images are read (gray, or color
beyond the paper), the optional resize of Sec. 4.2 and the mirror padding of images smaller
than a patch.

* :class:`Preprocess` reads an image (:meth:`Preprocess.read`: gray (H, W) as in the paper,
  or RGB (H, W, 3) for runs trained with ``--color``) and resizes it (to a fixed size or by
  a factor, anti-aliased); the paper downscales its 512x512 textures to 256x256 "to capture
  a more global context".
* :func:`pad_to_patch` pads images smaller than a patch by symmetric reflection.
* :func:`prepare_image` does both, from a file or an array.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from skimage.transform import resize

from ssimae.errors import BadArray, SsimaeError
from ssimae.io.images import pil_image, read_image, rgb_to_gray
from ssimae.core.window import PATCH_SIZE


MAX_SIDE = 16_384  # largest resize side (px), a documented ceiling (docs/commands.md, "Limits")
MAX_SCALE = 4.0  # largest scale factor, a documented ceiling


@dataclass(frozen=True)
class Preprocess:
    """How every image is read, and its optional resize, before cropping (and before testing).

    color: False (the paper) reads images as gray (H, W); True reads them as RGB (H, W, 3)
    and the network has 3 input and output channels (``channels``).
    size: fixed output (H, W), e.g. (256, 256) as in the paper for 512x512 textures.
    scale: factor on both sides, output ``max(1, round(H * scale)) x max(1, round(W * scale))``.
    At most one of them; neither means no resize. Resizing is bilinear
    (skimage.transform.resize, order=1, mode="reflect"), with Gaussian anti-aliasing when
    downscaling.
    """

    size: tuple[int, int] | None = None
    scale: float | None = None
    color: bool = False

    def __post_init__(self) -> None:
        if self.size is not None and self.scale is not None:
            raise SsimaeError("give a resize size or a scale factor, not both")
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise SsimaeError(f"resize size must be two positive integers (H, W), got {self.size}")
            if max(size) > MAX_SIDE:
                raise SsimaeError(f"resize size must be at most {MAX_SIDE} px a side (a documented ceiling), "
                                  f"got {self.size}")
            object.__setattr__(self, "size", size)
        if self.scale is not None:
            if not 0 < float(self.scale) <= MAX_SCALE:
                raise SsimaeError(f"scale factor must be in (0, {MAX_SCALE:g}] (a documented ceiling), got {self.scale}")
            object.__setattr__(self, "scale", float(self.scale))

    @property
    def resizes(self) -> bool:
        """True if :meth:`apply` may change an image's size (a size, or a scale other than 1)."""
        return self.size is not None or self.scale not in (None, 1.0)

    @property
    def channels(self) -> int:
        """Channels of the images and of the network's input and output: 3 for color, else 1."""
        return 3 if self.color else 1

    def read(self, path: str | os.PathLike) -> np.ndarray:
        """An image file as this run reads it: float32 (H, W), or (H, W, 3) with ``color``."""
        return read_image(path, color=self.color)

    def check(self, img, what: str = "image") -> np.ndarray:
        """An image given to the Python API (a numpy array or a Pillow image) converted as a
        file is: float32 in this run's layout, (H, W) gray or (H, W, 3) RGB with ``color``.
        Arrays: floats in [0, 1], or uint8 (0..255, divided by 255: the one explicit
        conversion); an alpha channel is dropped and, for a gray run, RGB becomes gray with
        the luma of files (:func:`ssimae.io.images.rgb_to_gray`). A Pillow image: as a file of
        its mode (:func:`ssimae.io.images.pil_image`). :class:`ssimae.errors.BadArray` (a
        ValueError) for anything else: another dtype, values outside [0, 1] (e.g. a float
        image in 0..255), NaN or infinity, an empty array, a wrong shape, a gray image for a
        colour run."""
        if isinstance(img, Image.Image):
            img = pil_image(img, self.color)
        a = np.asarray(img)
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[..., :3]  # alpha ignored, as in files
        if not self.color and a.ndim == 3 and a.shape[2] == 3 and a.size:
            a = rgb_to_gray(_as_unit_float(a, what) if a.dtype != np.uint8 else a)
        img = _as_unit_float(a, what)
        if self.color and (img.ndim != 3 or img.shape[2] != 3):
            kind = "a gray (H, W)" if img.ndim == 2 else f"shape {img.shape}"
            raise BadArray(f"this run reads colour images: expected an (H, W, 3) RGB {what}, got {kind} "
                           f"(a gray image cannot show colour defects)")
        if not self.color and img.ndim != 2:
            raise BadArray(f"this run reads gray images: expected an (H, W) or (H, W, 3) RGB {what}, "
                           f"got shape {img.shape}")
        return img

    def convert(self, source, what: str = "image") -> np.ndarray:
        """Any image the Python API is given (a file path, a numpy array, a Pillow image) as
        this run reads it (:meth:`read` for a path, :meth:`check` otherwise)."""
        return self.read(source) if isinstance(source, (str, os.PathLike)) else self.check(source, what)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(H, W) of an image after :meth:`apply`, for an input of shape (H, W) or (H, W, C)."""
        shape = tuple(shape[:2])
        if self.size is not None:
            return self.size
        if self.scale is not None:
            return max(1, round(shape[0] * self.scale)), max(1, round(shape[1] * self.scale))
        return int(shape[0]), int(shape[1])

    def apply(self, img: np.ndarray) -> np.ndarray:
        """float (H, W) or (H, W, C) in [0, 1] -> float32 (H', W'[, C]) in [0, 1], with
        (H', W') = output_shape (channels are resized alike)."""
        img = np.asarray(img, dtype=np.float32)
        out = self.output_shape(img.shape)
        if out == img.shape[:2]:
            return img
        down = out[0] < img.shape[0] or out[1] < img.shape[1]
        res = resize(img, out, order=1, mode="reflect", anti_aliasing=down, preserve_range=True)
        return np.clip(res, 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for checkpoints: {"size": [H, W] or None, "scale": float or None,
        "color": bool}."""
        return {"size": None if self.size is None else list(self.size), "scale": self.scale, "color": self.color}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """Inverse of :meth:`to_dict` (no "color": gray); unknown keys are an error."""
        unknown = set(d) - {"size", "scale", "color"}
        if unknown:
            raise SsimaeError(f"unknown preprocessing settings: {', '.join(sorted(unknown))}")
        color = d.get("color", False)
        if not isinstance(color, bool):
            raise SsimaeError(f"preprocessing setting color must be true or false, got {color!r}")
        return cls(size=d.get("size"), scale=d.get("scale"), color=color)


def _as_unit_float(img, what: str) -> np.ndarray:
    """float32 copy of an image array in [0, 1]: uint8 divided by 255, floats checked (finite,
    in [0, 1]); BadArray otherwise."""
    a = np.asarray(img)
    if a.size == 0 or min(a.shape, default=0) == 0:
        raise BadArray(f"the {what} is empty (shape {a.shape})")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if not np.issubdtype(a.dtype, np.floating):
        raise BadArray(f"the {what} must be float in [0, 1] or uint8, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise BadArray(f"the {what} holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 1:
        raise BadArray(f"the {what}'s values must be in [0, 1], got {lo:g}..{hi:g} (divide an 8-bit image by 255, "
                       f"or give it as uint8)")
    return a


def pad_to_patch(img: np.ndarray, patch: int = PATCH_SIZE) -> np.ndarray:
    """Pad (H, W) or (H, W, C) on the bottom and right to at least (patch, patch); larger
    sides (and channels) unchanged.

    Padding mirrors the image including its edge pixel (numpy mode "symmetric": ... c b a | a b
    c ...), repeatedly if the image is less than half a patch. Returns the input itself when
    no padding is needed; dtype is kept.
    """
    h, w = img.shape[:2]
    ph, pw = max(0, patch - h), max(0, patch - w)
    if ph == 0 and pw == 0:
        return img
    return np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="symmetric")


def prepare_image(source: str | os.PathLike | np.ndarray, preprocess: Preprocess, patch_size: int = PATCH_SIZE) -> np.ndarray:
    """File or float array in [0, 1] -> preprocessed, padded float32 (H'', W''), or
    (H'', W'', 3) for a color run (see :meth:`Preprocess.check`)."""
    return pad_to_patch(preprocess.apply(preprocess.convert(source, "training image")), patch_size)
