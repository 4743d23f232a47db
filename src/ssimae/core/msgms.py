"""Multi-scale gradient-magnitude similarity (MSGMS) in numpy, for the torch-free runtime.

The twin of :mod:`ssimae.core.msgms_torch` (what :func:`ssimae.core.residual.msgms_residual` uses for tensors): the same map to float rounding
(tests compare them), so an exported model scored by the ONNX runtime with the ``msgms``
residual gives the torch detector's numbers. Definitions as there: 3x3 Prewitt gradients
(cross-correlation, mirror padding that does not repeat the edge pixel), GMS = (2 g_a g_b +
c) / (g_a^2 + g_b^2 + c), on ``scales`` pyramid levels (2x2 average pooling, odd rows and
columns dropped as torch's ``avg_pool2d``), each level upsampled to (H, W) bilinearly with
half-pixel centres (torch's ``interpolate(..., align_corners=False)``), averaged.
Reference: Zavrtanik, Kristan, Skočaj, "Reconstruction by inpainting for visual anomaly
detection", Pattern Recognition 2021 (RIAD).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

GMS_C = 0.0026  # RIAD's stabilising constant
MSGMS_SCALES = 4  # full resolution and three halvings, as in RIAD
PREWITT = np.array([[1.0, 0.0, -1.0]] * 3) / 3


def gradient_magnitude(x: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W): sqrt(gx^2 + gy^2), 3x3 Prewitt, mirror borders (H, W >= 2)."""
    gx = ndi.correlate(x, PREWITT, mode="mirror")
    gy = ndi.correlate(x, PREWITT.T, mode="mirror")
    return np.sqrt(gx**2 + gy**2)


def avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (H, W) -> (H // 2, W // 2), a trailing odd row / column dropped."""
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _linear_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for a half-pixel-centred linear resize along
    one axis (torch's align_corners=False: src = (dst + 0.5) * n_in / n_out - 0.5, >= 0)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def upsample_bilinear(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) -> ``shape`` (H, W), bilinear with half-pixel centres."""
    r0, r1, wr = _linear_weights(shape[0], x.shape[0])
    c0, c1, wc = _linear_weights(shape[1], x.shape[1])
    rows = x[r0] * (1 - wr)[:, None] + x[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc) + rows[:, c1] * wc


def msgms_residual_numpy(x: np.ndarray, recon: np.ndarray, scales: int = MSGMS_SCALES, c: float = GMS_C) -> np.ndarray:
    """1 - MSGMS(x, recon) per pixel, averaged over the channels of a colour image;
    (H, W) or (C, H, W) float arrays -> (H, W) in [0, 1]."""
    if x.ndim == 3:
        return sum(msgms_residual_numpy(a, b, scales, c) for a, b in zip(x, recon)) / x.shape[0]
    a, b = np.asarray(x, np.float64), np.asarray(recon, np.float64)
    total = np.zeros(a.shape)
    used = 0
    for level in range(scales):
        if level:
            if min(a.shape) < 4:
                break
            a, b = avg_pool2(a), avg_pool2(b)
        ga, gb = gradient_magnitude(a), gradient_magnitude(b)
        gms = (2 * ga * gb + c) / (ga**2 + gb**2 + c)
        total += gms if level == 0 else upsample_bilinear(gms, x.shape[-2:])
        used += 1
    return 1.0 - total / used
