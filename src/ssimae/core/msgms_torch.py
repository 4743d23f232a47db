"""Multi-scale gradient-magnitude similarity (MSGMS) of torch batches: the differentiable
twin of :mod:`ssimae.core.msgms` (numpy), used by the ``msgms`` residual on the torch path and
by the inpainting model's loss.

Definitions as there (RIAD, Zavrtanik et al., Pattern Recognition 2021): 3x3 Prewitt
gradients with mirror padding, GMS = (2 g_a g_b + c) / (g_a^2 + g_b^2 + c) on ``scales``
pyramid levels (2x2 average pooling), each upsampled bilinearly (half-pixel centres) to
(H, W), averaged; channels averaged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssimae.core.msgms import GMS_C, MSGMS_SCALES, PREWITT


def gradient_magnitude(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """sqrt(gx^2 + gy^2 + eps) of (B, 1, H, W), 3x3 Prewitt, mirror padding; same shape.
    ``eps`` > 0 keeps the square root differentiable where the gradient vanishes (training)."""
    k = torch.stack([torch.from_numpy(PREWITT), torch.from_numpy(PREWITT.T.copy())])[:, None].to(x)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k)
    return torch.sqrt(g[:, :1] ** 2 + g[:, 1:] ** 2 + eps)


def msgms_map(a: torch.Tensor, b: torch.Tensor, scales: int = MSGMS_SCALES, c: float = GMS_C,
              eps: float = 0.0) -> torch.Tensor:
    """MSGMS of batches (B, C, H, W) -> (B, 1, H, W) in [0, 1], averaged over the channels;
    pyramid levels stop before a side falls below 4 px."""
    bsz, ch, h, w = a.shape
    a, b = a.reshape(bsz * ch, 1, h, w), b.reshape(bsz * ch, 1, h, w)
    total = torch.zeros_like(a)
    used = 0
    for level in range(scales):
        if level:
            if min(a.shape[-2:]) < 4:
                break
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        ga, gb = gradient_magnitude(a, eps), gradient_magnitude(b, eps)
        gms = (2 * ga * gb + c) / (ga**2 + gb**2 + c)
        total = total + (gms if level == 0 else F.interpolate(gms, size=(h, w), mode="bilinear", align_corners=False))
        used += 1
    return (total / used).reshape(bsz, ch, h, w).mean(1, keepdim=True)
