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
from ssimae.core.window import MAX_PATCHES, MAX_PIXELS, PATCH_SIZE, STRIDE, patch_count


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
            if size[0] * size[1] > MAX_PIXELS:
                raise SsimaeError(f"resize size must be at most {MAX_PIXELS} pixels (a documented ceiling), "
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
        a = _array(img, what)
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

    def convert(self, source, what: str = "image", stride: int | None = None) -> np.ndarray:
        """Any image the Python API is given (a file path, a numpy array, a Pillow image) as
        this run reads it (:meth:`read` for a path, :meth:`check` otherwise). With ``stride``,
        refused first by :meth:`check_cost` at that stride: a file after reading it
        (SsimaeError naming it), an array or Pillow image before any conversion (BadArray)."""
        if isinstance(source, (str, os.PathLike)):
            img = self.read(source)
            if stride is not None:
                self.check_cost(img.shape, stride, source)
            return img
        if stride is not None:
            shape = (source.height, source.width) if isinstance(source, Image.Image) else np.shape(source)
            if len(shape) >= 2:
                self.check_cost(shape, stride, error=BadArray)
        return self.check(source, what)

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

    def cost(self, shape: tuple[int, ...], stride: int = STRIDE) -> tuple[int, int]:
        """(pixels, patches) that scoring an image of ``shape`` (H, W[, C]) costs: the larger
        of its pixels as given and after :meth:`apply` (the maps are held at both
        resolutions), and the patches through the network at ``stride`` (after the padding
        to a patch: :func:`ssimae.core.window.patch_count`)."""
        h, w = self.output_shape(shape)
        return max(int(shape[0]) * int(shape[1]), h * w), patch_count(h, w, PATCH_SIZE, stride)

    def check_cost(self, shape: tuple[int, ...], stride: int = STRIDE, path: str | os.PathLike | None = None,
                   error: type[SsimaeError] = SsimaeError, limits: tuple[int, int] = (MAX_PIXELS, MAX_PATCHES)) -> None:
        """``error`` (naming ``path``) when an image of ``shape`` costs more than ``limits``
        (pixels, patches; default the ceilings :data:`ssimae.core.window.MAX_PIXELS` and
        :data:`ssimae.core.window.MAX_PATCHES`) by :meth:`cost`, before any work on it; the
        same for files and arrays."""
        (pixels, patches), where = self.cost(shape, stride), [path] if path is not None else []
        size = f"{shape[1]}x{shape[0]}"
        if pixels > limits[0]:
            raise error(f"image of {size} px too large to score ({pixels} pixels as given or resized, more than "
                        f"the limit of {limits[0]})", *where)
        if patches > limits[1]:
            raise error(f"image of {size} px too large to score ({patches} patches at stride {stride}, more than "
                        f"the limit of {limits[1]})", *where)

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


def _array(img, what: str) -> np.ndarray:
    """``img`` as a numpy array; BadArray naming its type when it is no array (a number,
    None, bytes, a ragged list)."""
    a = np.asarray(img)
    if a.ndim == 0 or a.dtype == object:
        hint = " (decode a file's contents with ssimae.io.images.decode_image)" if isinstance(img, (bytes, bytearray)) else ""
        raise BadArray(f"the {what} must be an array (H, W) or (H, W, 3), or an image file's path, "
                       f"got {type(img).__name__}{hint}")
    return a


def _as_unit_float(img, what: str) -> np.ndarray:
    """float32 copy of an image array in [0, 1]: uint8 divided by 255, floats checked (finite,
    in [0, 1]); BadArray otherwise."""
    a = _array(img, what)
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
