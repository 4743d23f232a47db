"""Reading images and ground-truth masks from files.

Every image becomes one gray float32 array of shape (H, W) with values in [0, 1], or, read
with ``color=True`` (runs trained with ``--color``), one RGB float32 array (H, W, 3):

* PNG, JPEG, BMP (and anything else Pillow reads) are decoded with Pillow; TIFF files
  (recognised by their first bytes, not their name) with tifffile, falling back to Pillow
  for compressions tifffile cannot decode without extra packages (e.g. LZW).
* Integer images are divided by the full range of their type: 8-bit by 255, 16-bit by
  65535 (PNG and TIFF alike), any other unsigned type by its maximum. 1-bit images give 0/1.
* Float images (TIFF) are kept as they are when all values lie in [0, 1]; otherwise they
  are min-max normalised to [0, 1] (a constant image becomes all zeros). Signed integer
  images are min-max normalised too. NaN or infinite values are an error.
* Color images become gray with the ITU-R 601-2 luma weights that Pillow's ``convert("L")``
  uses (L = 0.299 R + 0.587 G + 0.114 B), computed in floating point (no rounding to 8 bit).
  Palette images are expanded to their colors first. With ``color=True`` they keep their
  R, G, B channels instead, and gray images get three equal channels.
* An alpha channel is dropped: the color values are used as stored, not composited onto a
  background.
* EXIF orientation tags are ignored, so images and masks keep the same pixel grid.

Truncated or corrupt files are an error: every image is fully decoded (PNG chunk checksums
are verified too), and Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False
(its default) for that. Problems are reported as :class:`ssimae.errors.SsimaeError` naming
the file, e.g. ``"a.png: truncated or corrupt image file (PIL: image file is truncated)"``.

:func:`decode_image` applies the same rules to a file's contents in memory (``ssimae serve``'s
uploads); its errors name no file, and it can refuse an image over a pixel limit from its
header, before any pixel is decoded (:class:`ImageTooLargeError`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ssimae.errors import SsimaeError, one_line

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_LUMA = (299, 587, 114)  # ITU-R 601-2, per mille, as in Pillow's convert("L")
_TIFF_MINISWHITE, _TIFF_MINISBLACK, _TIFF_RGB = 0, 1, 2


class ImageTooLargeError(SsimaeError):
    """An image with more pixels than a limit allows (a decompression bomb, or more than the
    ``max_pixels`` of :func:`decode_image`), found before its pixels are decoded."""


class NotAnImageError(SsimaeError):
    """Data that no decoder recognises as an image."""


def _where(src: Path | io.BytesIO) -> Path | None:
    """The file a source names in messages (None for bytes in memory)."""
    return src if isinstance(src, Path) else None


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name has an image extension (case-insensitive) and is not hidden.

    Only the name is looked at; hidden files (name starting with ".", e.g. macOS "._a.png")
    are never images.
    """
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _check_file(path: Path) -> None:
    """Raise SsimaeError unless ``path`` is an existing, non-empty regular file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SsimaeError("no such file", path) from None
    except OSError as err:
        raise SsimaeError(f"cannot read file ({one_line(err)})", path) from None
    if not path.is_file():
        raise SsimaeError("not a file", path)
    if st.st_size == 0:
        raise SsimaeError("empty file (0 bytes)", path)


def _is_tiff(src: Path | io.BytesIO) -> bool:
    """True if the file (or the bytes) starts with a TIFF or BigTIFF signature."""
    if isinstance(src, io.BytesIO):
        return src.getvalue()[:4] in _TIFF_MAGIC
    with open(src, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, >=3) RGB(A) -> (H, W) float64 luma in the units of the input (alpha ignored)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b) / 1000.0


def _full_scale(dtype: np.dtype) -> float | None:
    """The value meaning "white" for an array type: 1 for bool, the max for unsigned ints.

    None for signed ints and floats (these are scaled by their values, see the module doc).
    """
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.unsignedinteger):
        return float(np.iinfo(dtype).max)
    return None


def _decode_pil(src: Path | io.BytesIO, color: bool = False,
                max_pixels: int | None = None) -> tuple[np.ndarray, float | None]:
    """Fully decode a file (or bytes) with Pillow -> (gray (H, W) or, with ``color``, RGB
    (H, W, 3) array in file units, full scale); see :func:`_decode`."""
    path = _where(src)
    try:
        with Image.open(src) as im:
            check_image_size(im.size[::-1], "YX", path, max_pixels)
            if im.format == "PNG":
                im.verify()  # chunk CRCs and IEND: catches files cut after the pixel data
        with Image.open(src) as im:
            im.load()
            return _pil_to_array(im, path, color)
    except UnidentifiedImageError:
        raise NotAnImageError("not an image file, or an image format that cannot be read", path) from None
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"image too large to read safely ({one_line(err)})", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise SsimaeError(f"truncated or corrupt image file (PIL: {one_line(err)})", path) from None


def _pil_to_array(im: Image.Image, path: Path | None, color: bool = False) -> tuple[np.ndarray, float | None]:
    """A loaded Pillow image -> (gray array (H, W), or RGB (H, W, 3) for a color image read
    with ``color``, full scale)."""
    mode = im.mode
    if mode == "P":
        im, mode = im.convert("RGB"), "RGB"
    elif mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    arr = np.asarray(im)
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return (arr[..., :3] if color else _luma(arr)), 255.0
    if mode in ("LA", "La"):
        return arr[..., 0], 255.0
    if arr.ndim != 2:
        raise SsimaeError(f"unsupported image mode {mode!r}", path)
    if mode.startswith("I;16"):
        return arr.astype(np.uint16), 65535.0
    if mode == "I" and im.format in ("PNG", "TIFF") and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return arr.astype(np.uint16), 65535.0  # 16-bit data that Pillow widened to 32 bit
    return arr, _full_scale(arr.dtype)


def check_image_size(shape, axes: str, path: Path | None, max_pixels: int | None = None) -> None:
    """The one size limit of every decoder: ImageTooLargeError (an SsimaeError) if an image
    of ``shape`` (with ``axes``; "S" = samples) has more pixels than Pillow's
    decompression-bomb limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, None disables it) or than
    ``max_pixels`` (None: no limit of its own), checked before its pixels are decoded."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = int(np.prod([n for ax, n in zip(axes, shape) if ax != "S"], dtype=np.float64))
    if limit is not None and pixels > 2 * limit:
        raise ImageTooLargeError(f"image too large to read safely ({pixels} pixels, more than the limit of "
                                 f"{2 * limit}; a decompression bomb?)", path)
    if max_pixels is not None and pixels > max_pixels:
        raise ImageTooLargeError(f"image too large ({pixels} pixels, more than the limit of {max_pixels})", path)


def _decode_tiff(src: Path | io.BytesIO, color: bool = False,
                 max_pixels: int | None = None) -> tuple[np.ndarray, float | None]:
    """Decode a TIFF file (or bytes) with tifffile -> (gray (H, W) or RGB (H, W, 3) array,
    full scale); Pillow as fallback."""
    path = _where(src)
    try:
        with tifffile.TiffFile(src) as tif:
            if len(tif.series) > 1:  # pages of different sizes: tifffile makes one series of each
                raise SsimaeError(f"multi-page TIFF of {len(tif.series)} images of different sizes: expected one "
                                  "2-D gray or RGB image, not a stack", path)
            series = tif.series[0]
            check_image_size(series.shape, series.axes, path, max_pixels)
            photometric = int(tif.pages[0].photometric)
            if photometric not in (_TIFF_MINISWHITE, _TIFF_MINISBLACK, _TIFF_RGB):
                return _decode_pil(src, color, max_pixels)  # palette, CMYK, YCbCr: let Pillow convert them
            arr = series.asarray()
            axes = series.axes
    except SsimaeError:
        raise
    except ValueError as err:
        if "imagecodecs" in str(err):  # compression tifffile cannot decode by itself
            return _decode_pil(src, color, max_pixels)
        raise SsimaeError(f"truncated or corrupt TIFF file (tifffile: {one_line(err)})", path) from None
    except Exception as err:  # tifffile raises many types for broken files
        raise SsimaeError(f"truncated or corrupt TIFF file (tifffile: {one_line(err)})", path) from None
    return _tiff_to_array(arr, axes, photometric, path, color)


def _tiff_to_array(arr: np.ndarray, axes: str, photometric: int, path: Path | None,
                   color: bool = False) -> tuple[np.ndarray, float | None]:
    """A decoded TIFF series with its axes ("YX", "YXS", "SYX", ...) -> (gray (H, W), or RGB
    (H, W, 3) for an RGB TIFF read with ``color``, scale)."""
    keep = [i for i, (ax, n) in enumerate(zip(axes, arr.shape)) if n > 1 or ax in "YX"]
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if axes == "SYX":
        arr, axes = np.moveaxis(arr, 0, -1), "YXS"
    if axes not in ("YX", "YXS"):
        shape = "x".join(str(n) for n in arr.shape)
        raise SsimaeError(f"unsupported image shape {shape} (axes {axes}): expected one 2-D gray or RGB image, "
                          "not a stack or volume", path)
    if axes == "YXS":
        if photometric == _TIFF_RGB and arr.shape[-1] >= 3:
            scale = _full_scale(arr.dtype)
            return (arr[..., :3] if color else _luma(arr)), scale
        arr = arr[..., 0]  # gray + extra samples (alpha): keep the gray channel
    scale = _full_scale(arr.dtype)
    if photometric == _TIFF_MINISWHITE:
        arr = (scale - arr.astype(np.float64)) if scale is not None else -arr.astype(np.float64)
    return arr, scale


def _decode(src: Path | io.BytesIO, color: bool = False,
            max_pixels: int | None = None) -> tuple[np.ndarray, float | None]:
    """Decode any supported file (or a file's bytes) -> (gray array (H, W), full scale or
    None); with ``color`` a color file gives its (H, W, 3) RGB array instead (a gray one
    still gives (H, W)).

    The array is in the file's own units (e.g. uint8 0..255, or float64 luma 0..255 for RGB);
    ``full scale`` is the value meaning white, or None where values are to be min-max scaled.
    """
    path = _where(src)
    if path is None:
        if not src.getvalue():
            raise SsimaeError("empty image (0 bytes)")
    else:
        _check_file(path)
    try:
        tiff = _is_tiff(src)
    except OSError as err:
        raise SsimaeError(f"cannot read file ({one_line(err)})", path) from None
    arr, scale = _decode_tiff(src, color, max_pixels) if tiff else _decode_pil(src, color, max_pixels)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2:] not in ((), (3,)):
        raise SsimaeError(f"unsupported image shape {arr.shape}", path)
    return arr, scale


def _to_unit(arr: np.ndarray, scale: float | None, path: Path | None) -> np.ndarray:
    """(H, W) or (H, W, 3) array in file units -> float32 of the same shape in [0, 1] (rules
    in the module doc; a min-max scaling spans all channels together)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if scale is not None and arr.dtype in (np.uint8, np.uint16):
        return arr.astype(np.float32) / np.float32(scale)  # exact operands: correctly rounded
    if scale is not None:
        return (arr.astype(np.float64) / scale).astype(np.float32)
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise SsimaeError("image contains NaN or infinite values", path)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        return values.astype(np.float32)
    if hi == lo:
        return np.zeros(values.shape, np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def read_image(path: str | os.PathLike, color: bool = False) -> np.ndarray:
    """Read an image file as gray float32 (H, W) with values in [0, 1]; with ``color``, as
    RGB float32 (H, W, 3) (a gray file's value in all three channels).

    See the module docstring for the conversion rules (bit depths, color, alpha, float TIFF).
    Raises SsimaeError naming the file if it is missing, empty, truncated, corrupt, not an
    image, or not a single 2-D image (e.g. a multi-page stack).
    """
    path = Path(path)
    return _unit_image(_decode(path, color), path, color)


def decode_image(data: bytes, color: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` of a file's contents ``data`` (PNG, JPEG, TIFF, ... as bytes):
    gray float32 (H, W) in [0, 1], or RGB (H, W, 3) with ``color``, by the same rules.

    Errors are SsimaeErrors that name no file: :class:`NotAnImageError` for data that is no
    image, :class:`ImageTooLargeError` for an image of more than ``max_pixels`` pixels (or
    a decompression bomb), read from its header before any pixel is decoded."""
    return _unit_image(_decode(io.BytesIO(data), color, max_pixels), None, color)


def pil_image(im: Image.Image, color: bool = False) -> np.ndarray:
    """A Pillow image (already open) converted as a file of its mode is by :func:`read_image`:
    float32 in [0, 1], (H, W) gray, or with ``color`` (H, W, 3) for a colour image and (H, W)
    for a gray one (the caller decides what a gray image means for a colour run)."""
    im.load()
    return _to_unit(*_pil_to_array(im, None, color), None)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W, 4) uint8 (0..255) or float in [0, 1] -> float32 (H, W) in [0, 1]:
    the luma of :func:`read_image` (alpha ignored), so an array and the same image as a
    file give the same gray values."""
    a = np.asarray(rgb)
    luma = _luma(a)
    return (luma / 255.0 if a.dtype == np.uint8 else luma).astype(np.float32)


def _unit_image(decoded: tuple[np.ndarray, float | None], path: Path | None, color: bool) -> np.ndarray:
    """A decoded (array, full scale) -> float32 (H, W) in [0, 1], or (H, W, 3) with ``color``."""
    img = _to_unit(*decoded, path)
    if color and img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img


def mask_is_binary(values: np.ndarray) -> bool:
    """True if a mask read by :func:`read_image` (float (H, W) in [0, 1]) holds only 0 and 1.

    Values within 1e-6 of 0 or 1 count as exact. A soft-edged or blurred mask is not binary.
    """
    v = np.asarray(values, dtype=np.float64)
    return bool(np.all((v <= 1e-6) | (v >= 1.0 - 1e-6)))


def _size_text(shape: tuple[int, int]) -> str:
    """(H, W) -> "WxH" text, as image viewers show sizes."""
    return f"{shape[1]}x{shape[0]}"


def read_mask_checked(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, bool]:
    """Read a ground-truth mask -> (bool (H, W) with True = defect, whether the file was binary).

    A pixel is a defect where its gray value is above half the range: > 127 for 8-bit,
    > 32767 for 16-bit, > 0.5 for float in [0, 1] (color masks are converted to gray first).
    Exception: an integer mask whose largest value is 1 (a label image with 0 = good,
    1 = defect) is read as such, since thresholding would silently make it all-good.
    If ``shape`` (H, W) of the image is given, a mask of another size raises SsimaeError
    ("mask is 100x120 (WxH) but its image is 128x128").
    """
    path = Path(path)
    arr, scale = _decode(path)
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise SsimaeError(f"mask is {_size_text(arr.shape)} (WxH) but its image is {_size_text(tuple(shape))}", path)
    if scale is not None and scale > 1 and np.issubdtype(arr.dtype, np.integer) and arr.max() == 1:
        return arr == 1, True
    values = _to_unit(arr, scale, path)
    return values > 0.5, mask_is_binary(values)


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as bool (H, W), True = defect. See :func:`read_mask_checked`."""
    return read_mask_checked(path, shape)[0]


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, from its header where possible (no pixel decoding).

    Does not detect truncated pixel data; :func:`read_image` does. Raises SsimaeError for
    missing, empty or unreadable files.
    """
    path = Path(path)
    _check_file(path)
    if _is_tiff(path):
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                dims = dict(zip(series.axes, series.shape))
            if "Y" in dims and "X" in dims:
                return int(dims["Y"]), int(dims["X"])
        except Exception:  # fall back to decoding, which reports the problem
            pass
        return read_image(path).shape
    try:
        with Image.open(path) as im:
            w, h = im.size
    except UnidentifiedImageError:
        raise SsimaeError("not an image file, or an image format that cannot be read", path) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SsimaeError(f"truncated or corrupt image file (PIL: {one_line(err)})", path) from None
    return int(h), int(w)
