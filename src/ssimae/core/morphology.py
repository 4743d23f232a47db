"""Morphological post-processing of residual maps: threshold, then opening with a disk.

Bergmann et al. (VISAPP 2019, Sec. 4.2) threshold the residual map and apply "an opening
with a circular structuring element of diameter 4 ... to delete outlier regions that are
only a few pixels wide" (Steger et al., 2018).

Definitions used here (``B`` the disk, ``D`` the image domain, ``X`` a defect set in ``D``):

* opening: ``X o B`` = union of all translates ``B + z`` that fit inside ``X``. It has no
  reference point, so the result does not depend on where the origin of an even-sized
  disk lies.
* border convention: pixels outside the image are *ignored*, i.e. they count as belonging
  to the set for the fit test: the result is ``((X u not D) o B) n D``. A translate that
  sticks out of the image is kept when its part inside the image lies in ``X``, so a defect
  touching the border is not removed just because it touches the border. (For the
  gray-scale version: the erosion pads with ``+inf``; erosion values are computed for all
  translates meeting the image, so no ``-inf`` padding of the dilation ever matters.)
* gray-scale opening with the flat disk: ``open(f)(p) = max over translates B + z that
  contain p of min of f over (B + z) n D``. Thresholding commutes with it:
  ``open(f) > t  ==  binary_opening(f > t)`` for every ``t`` (threshold decomposition,
  Soille, "Morphological Image Analysis", 2nd ed., Sec. 4.4 and 3.8), which makes the
  exact ROC over all thresholds cheap (see ``ssimae.core.metrics``).

Implementation: ``scipy.ndimage.grey_erosion`` then ``grey_dilation`` (its dilation
reflects the footprint and shifts the origin of even footprints so that the pair is a true
opening) on the map padded by ``diameter`` pixels of the "ignored" value, then cropped.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

OPENING_DIAMETER = 4  # paper, Sec. 4.2
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # the connectivity of defect regions everywhere (scipy structure)


def disk(diameter: int) -> np.ndarray:
    """Digital disk of the given diameter as a boolean footprint.

    Pixel ``(i, j)`` belongs iff ``(i - c)^2 + (j - c)^2 <= (d / 2)^2`` with
    ``c = (d - 1) / 2``: diameter 1 is a single pixel, 2 and 3 are full squares, 4 is the
    4x4 square without its corners (12 pixels), 5 is 5x5 without corners (21 pixels).

    Args:
        diameter: ``d >= 0``. ``0`` gives an empty (0, 0) array ("no opening").
    Returns:
        bool ndarray of shape (d, d).
    Raises:
        ValueError: negative or non-integer diameter.
    """
    d = _check_diameter(diameter)
    c = (d - 1) / 2.0
    i, j = np.ogrid[:d, :d]
    return (i - c) ** 2 + (j - c) ** 2 <= (d / 2.0) ** 2


def _check_diameter(diameter) -> int:
    """The diameter as an int; ValueError unless it is an integer >= 0."""
    if isinstance(diameter, (bool, np.bool_)) or int(diameter) != diameter:
        raise ValueError(f"opening diameter must be an integer, got {diameter!r}")
    d = int(diameter)
    if d < 0:
        raise ValueError(f"opening diameter must be >= 0, got {d}")
    return d


def _check_2d(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as an ndarray; ValueError unless it is 2-D."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) array, got shape {a.shape}")
    return a


def _ignored_value(dtype: np.dtype):
    """The padding value that makes outside pixels never limit an erosion."""
    if np.issubdtype(dtype, np.floating):
        return np.inf
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).max
    raise TypeError(f"unsupported dtype for gray-scale opening: {dtype}")


def _open(image: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Flat opening of a 2-D float/int image with the border convention of this module."""
    d = max(footprint.shape)
    high = _ignored_value(image.dtype)
    padded = np.pad(image, d, mode="constant", constant_values=high)
    eroded = ndi.grey_erosion(padded, footprint=footprint, mode="constant", cval=high)
    # Every translate that meets the image lies inside the padded array, so the
    # dilation's own border mode never reaches the cropped result.
    opened = ndi.grey_dilation(eroded, footprint=footprint, mode="nearest")
    return opened[d:-d, d:-d]


def gray_opening(residual: np.ndarray, diameter: int = OPENING_DIAMETER) -> np.ndarray:
    """Flat gray-scale opening of a residual map with ``disk(diameter)``.

    ``gray_opening(r, d) > t == binary_opening(r > t, d)`` for every threshold ``t``.

    Args:
        residual: (H, W) float (or integer) array, any value range; NaN is not allowed.
        diameter: disk diameter, default 4 (paper). ``0`` returns ``residual`` itself.
    Returns:
        (H, W) array of the same dtype, ``<= residual`` pixel-wise.
    Reference: Soille, "Morphological Image Analysis" (2003), Sec. 4.4; border convention
    in the module docstring.
    """
    residual = _check_2d(residual, "residual map")
    d = _check_diameter(diameter)
    if d == 0:
        return residual
    if residual.dtype == bool:
        raise TypeError("gray_opening needs a numeric map; use binary_opening for masks")
    return _open(residual, disk(d))


def binary_opening(mask: np.ndarray, diameter: int = OPENING_DIAMETER) -> np.ndarray:
    """Binary opening of a defect mask with ``disk(diameter)`` (border convention above).

    Args:
        mask: (H, W) bool array (nonzero = defect).
        diameter: disk diameter, default 4. ``0`` returns the mask (as bool) unchanged.
    Returns:
        (H, W) bool array, a subset of ``mask``.
    """
    mask = _check_2d(mask, "mask").astype(bool, copy=False)
    d = _check_diameter(diameter)
    if d == 0:
        return mask
    return _open(mask.view(np.uint8), disk(d)).astype(bool)


def segment(residual: np.ndarray, threshold: float,
            diameter: int = OPENING_DIAMETER) -> np.ndarray:
    """Defect segmentation of one residual map: ``gray_opening(residual) > threshold``.

    Equal to ``binary_opening(residual > threshold, diameter)``.

    Args:
        residual: (H, W) float array (larger = more likely defective).
        threshold: pixels strictly above it (after opening) are defects.
        diameter: disk diameter, default 4; 0 = no opening.
    Returns:
        (H, W) bool defect mask.
    """
    return is_defect(gray_opening(residual, diameter), threshold)


def is_defect(opened: np.ndarray, threshold: float) -> np.ndarray:
    """The one defect rule: a pixel is a defect iff its *opened* residual is strictly greater
    than ``threshold``. (H, W) float -> (H, W) bool."""
    return np.asarray(opened) > threshold


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels (H, W) int, count) of the 8-connected regions of a bool mask
    (``scipy.ndimage.label`` with :data:`EIGHT_CONNECTED`; labels 1..count in raster order)."""
    return ndi.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)


def largest_region_area(mask: np.ndarray) -> int:
    """Pixel count of the largest 8-connected region of a bool mask (0 if empty)."""
    labels, n = label_regions(mask)
    return int(np.bincount(labels.ravel())[1:].max()) if n else 0
