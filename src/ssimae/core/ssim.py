"""The torch-free part of SSIM: its constants, its stored options and a numpy/scipy map.

:mod:`ssimae.core.ssim_torch` holds the differentiable torch version used for training and by the
torch inference path; :func:`ssim_map_numpy` is the same map for numpy arrays (used by the
ONNX runtime, :mod:`ssimae.runtime`, which must not import torch). Both filter the five
local moments with a separable K x K window on the image padded by reflection without
repeating the edge pixel (edge replication when the image is smaller than the half
window), and both shift the moments by a per-image constant; in float64 they agree to
about 1e-12 (tested).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from ssimae.errors import SsimaeError

WINDOW_SIZE = 11  # K in the paper, Sec. 4.2
GAUSSIAN_SIGMA = 1.5  # Wang et al. (2004); skimage's default with gaussian_weights=True
K1, K2 = 0.01, 0.03


def _constants(data_range: float):
    """c1, c2, c3 of Wang et al. (2004) for images with this data range."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    return c1, c2, c2 / 2


MAX_WINDOW = 127  # the largest SSIM window (a 128-pixel patch's), a documented ceiling


@dataclass(frozen=True)
class SsimOptions:
    """The keyword arguments of :func:`ssimae.core.ssim_torch.ssim_map` (and :func:`ssim_map_numpy`)
    as a typed, stored setting.

    Defaults are the paper's: window K = 11 (Gaussian, sigma 1.5), alpha = beta = gamma = 1,
    images in [0, 1]. ``ssim_map(x, y, **opts.kwargs())`` applies them.
    """

    window_size: int = WINDOW_SIZE
    sigma: float = GAUSSIAN_SIGMA
    gaussian: bool = True
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    data_range: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.window_size, bool) or not isinstance(self.window_size, int) \
                or self.window_size < 1 or self.window_size % 2 == 0 or self.window_size > MAX_WINDOW:
            raise SsimaeError(f"SSIM window size must be an odd positive integer up to {MAX_WINDOW}, "
                              f"got {self.window_size!r}")
        for name in ("sigma", "data_range"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SsimaeError(f"SSIM {name} must be a positive number, got {v!r}")
        for name in ("alpha", "beta", "gamma"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise SsimaeError(f"SSIM exponent {name} must be a number >= 0, got {v!r}")

    def kwargs(self) -> dict:
        """{name: value} for ``ssim_map(x, y, **kwargs)``."""
        return asdict(self)


def window_weights(size: int = WINDOW_SIZE, sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True) -> np.ndarray:
    """Normalised 1-D float64 window of ``size`` taps (Gaussian with ``sigma`` or uniform)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"SSIM window size must be odd and positive, got {size}")
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(r**2) / (2 * sigma**2)) if gaussian else np.ones(size)
    return w / w.sum()


def _filter(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable same-size filtering of a 2-D array (rows, then columns)."""
    mode = "mirror" if min(a.shape) > len(w) // 2 else "nearest"
    return ndi.correlate1d(ndi.correlate1d(a, w, axis=1, mode=mode), w, axis=0, mode=mode)


def _power(t: np.ndarray, e: float) -> np.ndarray:
    return t if e == 1 else np.sign(t) * np.abs(t) ** e  # sign kept: structure can be negative


def ssim_map_numpy(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, window_size: int = WINDOW_SIZE,
                   sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True,
                   alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Per-pixel SSIM of two (H, W) arrays, same shape and dtype as ``x`` (compute in
    float64 for scoring); the numpy twin of :func:`ssimae.core.ssim_torch.ssim_map`."""
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"SSIM needs two (H, W) arrays of equal shape, got {x.shape} and {y.shape}")
    w = window_weights(window_size, sigma, gaussian).astype(x.dtype)
    shift = 0.5 * (x.mean() + y.mean())
    xs, ys = x - shift, y - shift
    mu_x, mu_y, exx, eyy, exy = (_filter(a, w) for a in (xs, ys, xs * xs, ys * ys, xs * ys))
    var_x, var_y, cov = exx - mu_x * mu_x, eyy - mu_y * mu_y, exy - mu_x * mu_y
    mu_x, mu_y = mu_x + shift, mu_y + shift
    c1, c2, c3 = _constants(data_range)
    lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    if alpha == beta == gamma == 1:
        return lum * (2 * cov + c2) / (var_x + var_y + c2)
    sd_x, sd_y = np.sqrt(np.maximum(var_x, 1e-12)), np.sqrt(np.maximum(var_y, 1e-12))
    con = (2 * sd_x * sd_y + c2) / (var_x + var_y + c2)
    struct = (cov + c3) / (sd_x * sd_y + c3)
    return _power(lum, alpha) * _power(con, beta) * _power(struct, gamma)
