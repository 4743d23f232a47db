"""Residual maps: how much each pixel of an image differs from its reconstruction.

The registry :data:`RESIDUALS` maps a name to a :class:`Residual`: a function of the image
and the model's pooled outputs, and the outputs it needs. Built in:

- ``l2``: per-pixel squared difference (x - x_hat)^2 (the paper's l2 baseline, and the
  residual of the feature-matching AE).
- ``ssim``: 1 - SSIM(x, x_hat) per pixel (Sec. 3; window K=11, alpha=beta=gamma=1).
- ``vae``: per-pixel reconstruction probability (An and Cho, 2015) as a negative
  log-likelihood, see :func:`vae_residual`.

Beyond the paper (options, measured in docs/results/recipe/):

- ``msgms``: 1 - multi-scale gradient-magnitude similarity (as in RIAD, Zavrtanik et al.,
  Pattern Recognition 2021), see :func:`msgms_residual`.
- ``ssim+l2``: the SSIM and l2 residuals, each standardised by its mean and standard
  deviation over the defect-free validation images (``InferenceSettings.residual_stats``,
  stored by :mod:`ssimae.inference.calibration`), added.

Any map can also be smoothed with a Gaussian before thresholding (``InferenceSettings.smooth``,
applied by the detector).

Color runs (``--color``, beyond the paper) give every map for (C, H, W) images: ``l2`` and
``vae`` sum their per-channel values (a pixel's squared error resp. negative log-likelihood
is the sum over its channels), ``ssim`` and ``msgms`` average theirs over the channels.

A new residual is one :func:`register_residual` entry. All maps are computed on the whole
image after sliding-window reconstruction (:mod:`ssimae.core.window`); larger = more likely a
defect. Shapes: images and outputs (H, W), or (C, H, W) for color; maps (H, W); float64 torch tensors (the torch path, :class:`ssimae.inference.detector.Detector`)
or numpy arrays (the ONNX runtime, :mod:`ssimae.runtime`): this module imports torch only
when given tensors, and each residual computes the same map for both (the SSIM one with
:func:`ssimae.core.ssim.ssim_map_numpy` for arrays; ``msgms`` with :mod:`ssimae.core.msgms`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ssimae.errors import SsimaeError
from ssimae.core.registry import Registry
from ssimae.core.ssim import SsimOptions, ssim_map_numpy
from ssimae.core.window import is_torch_tensor


@dataclass(frozen=True)
class ResidualContext:
    """What a residual may read besides the image and outputs: the run's inference
    settings (:class:`ssimae.runs.settings.InferenceSettings`) and the model's hyperparameters."""

    settings: Any
    params: Any = None


ResidualFn = Callable[[Any, Mapping[str, Any], ResidualContext], Any]  # (H, W) tensors or arrays


@dataclass(frozen=True)
class Residual:
    """A residual map: ``fn(x, outputs, ctx) -> (H, W)`` with x the (H, W) image (or (C, H, W)
    for color) and ``outputs`` the model's pooled outputs of the same shape by name (``needs``
    lists those it reads)."""

    name: str
    fn: ResidualFn
    needs: tuple[str, ...] = ("recon",)
    description: str = ""
    needs_stats: tuple[str, ...] = ()  # residuals whose validation statistics it reads


RESIDUALS: Registry[Residual] = Registry("residual")


def register_residual(name: str, needs: tuple[str, ...] = ("recon",), description: str = "", *,
                      needs_stats: tuple[str, ...] = (), replace: bool = False):
    """Decorator: register ``fn(x, outputs, ctx) -> (H, W) map`` as residual ``name``."""
    def add(fn: ResidualFn) -> ResidualFn:
        RESIDUALS.add(name, Residual(name, fn, tuple(needs), description, tuple(needs_stats)), replace)
        return fn

    return add


def unregister_residual(name: str) -> None:
    RESIDUALS.pop(name, None)


def get_residual(name: str) -> Residual:
    return RESIDUALS.lookup(name)


def channel_sum(m):
    """(C, H, W) -> (H, W), the sum over channels; an (H, W) map is returned as it is."""
    return m.sum(0) if m.ndim == 3 else m


def l2_residual(x, recon):
    """(x - recon)^2 per pixel, summed over the channels of a color image; (H, W) or
    (C, H, W) -> (H, W), in [0, C] for images in [0, 1]."""
    return channel_sum((x - recon) ** 2)


def ssim_residual(x, recon, options: SsimOptions = SsimOptions()):
    """1 - SSIM(x, recon) per pixel, SSIM averaged over the channels of a color image (as
    skimage's ``structural_similarity(..., channel_axis=...)`` averages its mean);
    (H, W) or (C, H, W) -> (H, W), in [0, 2]."""
    if not is_torch_tensor(x):
        if x.ndim == 3:
            return 1.0 - np.mean([ssim_map_numpy(a, b, **options.kwargs()) for a, b in zip(x, recon)], axis=0)
        return 1.0 - ssim_map_numpy(x, recon, **options.kwargs())
    from ssimae.core.ssim_torch import ssim_map

    if x.ndim == 3:
        return 1.0 - ssim_map(x[None], recon[None], **options.kwargs())[0].mean(0)
    return 1.0 - ssim_map(x[None, None], recon[None, None], **options.kwargs())[0, 0]


def vae_residual(x, mean, var, obs_var: float):
    """Negative log reconstruction probability per pixel (An and Cho, 2015).

    The decodings of N latent samples z ~ Q(z|x) give, per pixel, a sample mean ``mean``
    and variance ``var``; the predictive distribution of the pixel is taken as the
    Gaussian N(mean, var + obs_var), where ``obs_var`` is the fixed variance of the
    decoder's likelihood P(x|z) used in training. The residual is
        0.5 * log(2 pi v) + (x - mean)^2 / (2 v),   v = var + obs_var,
    summed over the channels of a color image (channels independent given z).
    Shapes (H, W), or (C, H, W) -> (H, W); values are log-densities (unbounded, may be negative).
    """
    if not is_torch_tensor(var):
        v = np.maximum(var, 0) + obs_var
        return channel_sum(0.5 * np.log(2 * math.pi * v) + (x - mean) ** 2 / (2 * v))
    import torch

    v = var.clamp_min(0) + obs_var
    return channel_sum(0.5 * torch.log(2 * math.pi * v) + (x - mean) ** 2 / (2 * v))


def msgms_residual(x, recon, scales: int | None = None, c: float | None = None):
    """1 - MSGMS(x, recon) per pixel, averaged over the channels of a color image;
    (H, W) or (C, H, W) -> (H, W), in [0, 1]. Torch tensors: :func:`ssimae.core.msgms_torch.msgms_map`;
    numpy arrays: its twin :func:`ssimae.core.msgms.msgms_residual_numpy` (the torch-free runtime)."""
    from ssimae.core.msgms import GMS_C, MSGMS_SCALES, msgms_residual_numpy

    scales, c = MSGMS_SCALES if scales is None else scales, GMS_C if c is None else c
    if not is_torch_tensor(x):
        return msgms_residual_numpy(x, recon, scales, c)
    from ssimae.core.msgms_torch import msgms_map

    batch = (lambda t: t[None, None]) if x.ndim == 2 else (lambda t: t[None])
    return 1.0 - msgms_map(batch(x), batch(recon), scales, c)[0, 0]


def standardised(name: str, m, ctx: "ResidualContext"):
    """(m - mean) / std of residual ``name`` on the defect-free validation images."""
    mean, std = ctx.settings.residual_stats[name]
    return (m - mean) / max(std, 1e-12)


register_residual("l2", description="per-pixel squared error (x - x_hat)^2")(
    lambda x, out, ctx: l2_residual(x, out["recon"]))
register_residual("ssim", description="1 - SSIM(x, x_hat) per pixel (window K = 11)")(
    lambda x, out, ctx: ssim_residual(x, out["recon"], ctx.settings.ssim))
register_residual("vae", needs=("recon", "second_moment"),
                  description="VAE: negative log reconstruction probability over N latent samples")(
    lambda x, out, ctx: vae_residual(x, out["recon"], out["second_moment"] - out["recon"] ** 2, ctx.params.obs_var))
register_residual("msgms", description="1 - multi-scale gradient-magnitude similarity (RIAD)")(
    lambda x, out, ctx: msgms_residual(x, out["recon"]))
register_residual("draem", needs=("anomaly",),
                  description="DRAEM: the segmentation head's anomaly probability (beyond the paper)")(
    lambda x, out, ctx: out["anomaly"].mean(0) if out["anomaly"].ndim == 3 else out["anomaly"])
register_residual("ssim+l2", needs_stats=("ssim", "l2"),
                  description="SSIM and l2 residuals, each standardised on the validation images, added")(
    lambda x, out, ctx: standardised("ssim", ssim_residual(x, out["recon"], ctx.settings.ssim), ctx)
    + standardised("l2", l2_residual(x, out["recon"]), ctx))


def check_residual(name: str, outputs: tuple[str, ...]) -> Residual:
    """The residual ``name``; SsimaeError (before any scoring) if a model with ``outputs``
    cannot give it."""
    res = get_residual(name)
    missing = [n for n in res.needs if n not in outputs]
    if missing:
        raise SsimaeError(f"--residual {name}: needs the model output(s) {', '.join(missing)}, "
                          f"which this model does not produce (it gives {', '.join(outputs)})")
    return res


def residual_map(name: str, x, outputs: Mapping[str, Any], ctx: ResidualContext):
    """Residual map ``name`` (H, W) of image x (H, W), or (C, H, W) for color, from the
    model's pooled outputs {name: same shape} (torch tensors or numpy arrays; the map is of
    the same kind).

    Computed in float64: scoring runs once per image, and float64 keeps SSIM within 1e-5
    of skimage (float32's E[x^2] - E[x]^2 loses ~1e-4 in flat regions).
    """
    res = get_residual(name)
    missing = [n for n in res.needs if n not in outputs]
    if missing:
        raise SsimaeError(f"the {name} residual needs the model output(s) {', '.join(missing)}, "
                          f"which this model does not produce (it gives {', '.join(outputs)})")
    missing = [n for n in res.needs_stats if n not in ctx.settings.residual_stats]
    if missing:
        raise SsimaeError(f"the {name} residual needs statistics of the {', '.join(missing)} residual(s) on "
                          f"defect-free validation images, which this run does not hold")
    return res.fn(_float64(x), {k: _float64(v) for k, v in outputs.items()}, ctx)


def _float64(a):
    """A tensor or array in float64."""
    return a.double() if is_torch_tensor(a) else np.asarray(a, dtype=np.float64)
