"""Structural similarity (SSIM) as a differentiable per-pixel map, its loss and its options.

SSIM(x, y) = l(x, y)^alpha * c(x, y)^beta * s(x, y)^gamma with, over a local window,
    l = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)          luminance
    c = (2 sigma_x sigma_y + c2) / (sigma_x^2 + sigma_y^2 + c2)  contrast
    s = (sigma_xy + c3) / (sigma_x sigma_y + c3)              structure
c1 = (0.01 L)^2, c2 = (0.03 L)^2, c3 = c2 / 2 for data range L (Wang et al., 2004).
Local statistics use a K x K window (K = 11 in the paper): Gaussian with sigma 1.5
(default, as skimage's ``gaussian_weights=True``) or uniform. Variances are population
variances (skimage's ``use_sample_covariance=False``).

With alpha = beta = gamma = 1 the product c * s collapses to
(2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2); that fused form is used then (faster,
and its gradient is finite where a window is flat).

Shapes: images (B, C, H, W), float; maps (B, C, H, W) (same size: the image is padded by
reflection before filtering, so values within K // 2 of the border differ from skimage's,
which pads differently).
Reference: Bergmann et al., VISAPP 2019, Sec. 3; Wang et al., IEEE TIP 13(4), 2004.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# Constants and options live in the torch-free core (shared with the ONNX runtime).
from ssimae.core.ssim import GAUSSIAN_SIGMA, K1, K2, WINDOW_SIZE, SsimOptions, _constants  # noqa: F401


def window_1d(size: int = WINDOW_SIZE, sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True,
              dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D window of ``size`` taps (Gaussian with ``sigma`` or uniform); the 2-D
    window is its outer product."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"SSIM window size must be odd and positive, got {size}")
    if gaussian:
        r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        w = torch.exp(-(r**2) / (2 * sigma**2))
    else:
        w = torch.ones(size, dtype=torch.float64)
    return (w / w.sum()).to(dtype=dtype, device=device)


BAND_MAX_SIDE = 128  # sides up to this length (the 128x128 patches) are filtered by matrix products (see _filter)


@functools.lru_cache(maxsize=32)
def _band_matrix(n: int, taps: tuple[float, ...], mode: str, dtype: torch.dtype, device: str) -> torch.Tensor:
    """(n, n) matrix M with ``a @ M`` = the same-size filtering of the last axis of ``a`` with
    the window ``taps``, the padding (reflect, without repeating the edge sample, or
    replicate) folded in."""
    pad = len(taps) // 2
    m = torch.zeros(n, n, dtype=torch.float64)
    for out in range(n):
        for j, tap in enumerate(taps):
            src = out + j - pad
            if mode == "reflect":
                src = -src if src < 0 else (2 * (n - 1) - src if src > n - 1 else src)
            else:
                src = min(max(src, 0), n - 1)
            m[src, out] += tap
    return m.to(dtype=dtype, device=device)


def _filter(stack: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable same-size filtering of every channel of (B, N, H, W) with window ``w``
    (the image padded by reflection, or by replication where a side is too short to reflect).

    Small images (both sides <= BAND_MAX_SIDE: the 128x128 training patches) are
    filtered by two matrix products with banded matrices, ``M_h^T @ stack @ M_w``: more
    multiplications than the 11-tap convolution, but for a batch of patches on a CPU about
    three times faster than the grouped convolution, forward and backward
    (benchmarks/bench_kernels.py). Larger images, and tensors on a GPU, use the grouped
    convolution. Both give the same values up to float rounding (tests/unit/core/test_ssim.py)."""
    n = stack.shape[1]
    k = w.numel()
    pad = k // 2
    h, w_ = stack.shape[-2:]
    mode = "reflect" if min(h, w_) > pad else "replicate"
    if max(h, w_) <= BAND_MAX_SIDE and stack.device.type == "cpu":
        taps = tuple(w.tolist())
        m_w = _band_matrix(w_, taps, mode, stack.dtype, str(stack.device))
        m_h = _band_matrix(h, taps, mode, stack.dtype, str(stack.device))
        return m_h.T @ (stack @ m_w)
    stack = F.pad(stack, (pad, pad, pad, pad), mode=mode)
    stack = F.conv2d(stack, w.view(1, 1, 1, k).expand(n, 1, 1, k), groups=n)
    return F.conv2d(stack, w.view(1, 1, k, 1).expand(n, 1, k, 1), groups=n)


def local_stats(x: torch.Tensor, y: torch.Tensor, window_size: int = WINDOW_SIZE,
                sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True):
    """Local means, variances and covariance of x and y: five (B, C, H, W) tensors
    mu_x, mu_y, var_x, var_y, cov_xy (population moments, window-weighted)."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    b, c, h, w_ = x.shape
    w = window_1d(window_size, sigma, gaussian, dtype=x.dtype, device=x.device)
    # Moments of x and y shifted by a per-image constant: (co)variances do not change, and
    # E[x^2] - E[x]^2 cancels far less in float32 (error 3e-4 -> 1e-5 on real photos).
    shift = 0.5 * (x.mean(dim=(-2, -1), keepdim=True) + y.mean(dim=(-2, -1), keepdim=True)).detach()
    xs, ys = x - shift, y - shift
    # One grouped convolution filters all five moment images of every channel at once.
    stack = torch.stack([xs, ys, xs * xs, ys * ys, xs * ys], dim=2).reshape(b, c * 5, h, w_)
    f = _filter(stack, w).reshape(b, c, 5, h, w_)
    mu_x, mu_y, exx, eyy, exy = f.unbind(dim=2)
    var_x = exx - mu_x * mu_x
    var_y = eyy - mu_y * mu_y
    cov = exy - mu_x * mu_y
    return mu_x + shift, mu_y + shift, var_x, var_y, cov


def ssim_components(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0,
                    window_size: int = WINDOW_SIZE, sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True):
    """Luminance, contrast and structure maps l, c, s, each (B, C, H, W).

    l and c lie in [0, 1] for non-negative images; s in [-1, 1]."""
    c1, c2, c3 = _constants(data_range)
    mu_x, mu_y, var_x, var_y, cov = local_stats(x, y, window_size, sigma, gaussian)
    # Clamp before the square root: rounding can make a flat window's variance -1e-9, and
    # sqrt'(0) is infinite; 1e-12 moves sigma by at most 1e-6.
    sd_x = torch.sqrt(var_x.clamp_min(1e-12))
    sd_y = torch.sqrt(var_y.clamp_min(1e-12))
    lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    con = (2 * sd_x * sd_y + c2) / (var_x + var_y + c2)
    struct = (cov + c3) / (sd_x * sd_y + c3)
    return lum, con, struct


def _power(t: torch.Tensor, e: float) -> torch.Tensor:
    if e == 1:
        return t
    return torch.sign(t) * t.abs().pow(e)  # sign kept: structure can be negative


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = WINDOW_SIZE,
             sigma: float = GAUSSIAN_SIGMA, gaussian: bool = True,
             alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM of x and y, (B, C, H, W) -> (B, C, H, W), values in [-1, 1].

    Equals ``skimage.metrics.structural_similarity(x, y, data_range=L, full=True,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)[1]`` away from the
    borders for the defaults. Exponents other than 1 are applied sign-preserving.
    """
    if alpha == beta == gamma == 1:
        c1, c2, _ = _constants(data_range)
        mu_x, mu_y, var_x, var_y, cov = local_stats(x, y, window_size, sigma, gaussian)
        lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
        return lum * (2 * cov + c2) / (var_x + var_y + c2)
    lum, con, struct = ssim_components(x, y, data_range, window_size, sigma, gaussian)
    return _power(lum, alpha) * _power(con, beta) * _power(struct, gamma)


def ssim_loss(x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
    """Training loss of the SSIM-autoencoder: 1 - mean SSIM (a scalar, in [0, 2])."""
    return 1.0 - ssim_map(x, y, **kwargs).mean()
