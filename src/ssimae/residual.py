"""Residual maps: how much each pixel of an image differs from its reconstruction.

- ``l2``: per-pixel squared difference (x - x_hat)^2 (the paper's l2 baseline, and the
  residual of the feature-matching AE).
- ``ssim``: 1 - SSIM(x, x_hat) per pixel (Sec. 3; window K=11, alpha=beta=gamma=1).
- ``vae``: per-pixel reconstruction probability (An and Cho, 2015) as a negative
  log-likelihood, see :func:`vae_residual`.

All maps are computed on the whole image after sliding-window reconstruction
(:mod:`ssimae.window`), larger = more likely a defect. Shapes: (H, W) tensors.
"""
from __future__ import annotations

import math

import torch

from ssimae.ssim import ssim_map

RESIDUALS = ("l2", "ssim", "vae")
DEFAULT_RESIDUAL = {"l2": "l2", "ssim": "ssim", "fm": "l2", "vae": "vae"}


def l2_residual(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """(x - recon)^2 per pixel; (H, W) -> (H, W), in [0, 1] for images in [0, 1]."""
    return (x - recon) ** 2


def ssim_residual(x: torch.Tensor, recon: torch.Tensor, **ssim_kwargs) -> torch.Tensor:
    """1 - SSIM(x, recon) per pixel; (H, W) -> (H, W), in [0, 2]."""
    return 1.0 - ssim_map(x[None, None], recon[None, None], **ssim_kwargs)[0, 0]


def vae_residual(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, obs_var: float) -> torch.Tensor:
    """Negative log reconstruction probability per pixel (An and Cho, 2015).

    The decodings of N latent samples z ~ Q(z|x) give, per pixel, a sample mean ``mean``
    and variance ``var``; the predictive distribution of the pixel is taken as the
    Gaussian N(mean, var + obs_var), where ``obs_var`` is the fixed variance of the
    decoder's likelihood P(x|z) used in training. The residual is
        0.5 * log(2 pi v) + (x - mean)^2 / (2 v),   v = var + obs_var.
    Shapes (H, W); values are log-densities (unbounded, may be negative).
    """
    v = var.clamp_min(0) + obs_var
    return 0.5 * torch.log(2 * math.pi * v) + (x - mean) ** 2 / (2 * v)


def residual_map(kind: str, x: torch.Tensor, outputs: torch.Tensor, ssim_kwargs: dict | None = None,
                 obs_var: float = 0.01) -> torch.Tensor:
    """Residual map of type ``kind`` from the sliding-window outputs.

    x: (H, W) image. outputs: (1, H, W) reconstruction, or for the VAE (2, H, W) the
    pooled mean and second moment of the decodings (the reconstruction is the mean).
    """
    # Scoring runs once per image: float64 keeps SSIM within 1e-5 of skimage (float32's
    # E[x^2] - E[x]^2 loses ~1e-4 in flat regions).
    x, outputs = x.double(), outputs.double()
    recon = outputs[0]
    if kind == "l2":
        return l2_residual(x, recon)
    if kind == "ssim":
        return ssim_residual(x, recon, **(ssim_kwargs or {}))
    if kind == "vae":
        if outputs.shape[0] < 2:
            raise ValueError("the vae residual needs the decodings' second moment (a VAE model)")
        var = outputs[1] - recon**2
        return vae_residual(x, recon, var, obs_var)
    raise ValueError(f"unknown residual {kind!r} (expected one of {', '.join(RESIDUALS)})")
