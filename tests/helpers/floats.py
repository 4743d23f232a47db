"""Comparing results that the same network computed in a different batch composition, with
other kernels or in another process split: tolerances derived from the computation.

**Why results differ at all.** A convolution's output is a float32 sum of K products; oneDNN
and ATen pick the order of that sum by the batch size, the CPU's instruction set
(AVX2, AVX-512, ...) and the thread split. A sum of K float32 terms in another order differs
by at most K * u relative in the worst case and by about sqrt(K) * u in practice (u = 2**-24,
float32's unit roundoff; Higham, *Accuracy and Stability of Numerical Algorithms*, Sec. 4.2).
The widest sum of the Table 1 network is its 8 x 8 x 64 bottleneck convolution, K = 4096:
sqrt(K) * u = 3.8e-6. Each layer can add its own such error, and the residual (SSIM, l2) is a
smooth function of the reconstruction, so scores and residual values of order 1 are compared
with :data:`RESIDUAL_RTOL` = 1e-5 (relative, with an absolute floor of the same size for values
near 0): a few times the per-layer estimate, and more than 50x the 1-ulp (1.2e-7) differences
seen between batch compositions on two CPUs.

**Verdicts** are compared exactly, except where the value they threshold lies within that
tolerance of the threshold (:func:`near`): there a flip is the rounding, not a bug.
"""
from __future__ import annotations

import math

import numpy as np

RESIDUAL_RTOL = 1e-5
UNIT_ROUNDOFF = 2.0**-24  # float32's u


def sum_bound(abs_sum, k: int):
    """Worst-case bound on the difference between two float32 evaluations, in any two orders
    (or blockings), of sums of at most ``k`` products whose absolute values sum to ``abs_sum``:
    each is within gamma_k * abs_sum of the exact sum, gamma_k = k u / (1 - k u) (Higham,
    Sec. 3.1, for dot products), so the two differ by at most twice that. No tuning: an upper
    bound for any kernel, loose where the practical sqrt(k) u would do."""
    gamma = k * UNIT_ROUNDOFF / (1 - k * UNIT_ROUNDOFF)
    return 2 * gamma * abs_sum


def near(value: float, threshold: float, rtol: float = RESIDUAL_RTOL) -> bool:
    """True when ``value`` is within the rounding tolerance of ``threshold`` (a verdict at it may flip)."""
    return abs(value - threshold) <= rtol * max(1.0, abs(threshold))


def flippable(opened: np.ndarray, threshold: float, rtol: float = RESIDUAL_RTOL) -> np.ndarray:
    """(H, W) bool: pixels of an opened residual map whose mask value (``opened > threshold``)
    may flip under the rounding tolerance. The opening is 1-Lipschitz in the max norm (a max of
    mins), so a residual perturbed by at most delta gives an opened map perturbed by at most delta."""
    return np.abs(np.asarray(opened, np.float64) - threshold) <= rtol * max(1.0, abs(threshold))


def maps_close(got: np.ndarray, ref: np.ndarray, rtol: float = RESIDUAL_RTOL) -> None:
    """Assert two residual maps (or other arrays of per-pixel values of order 1) computed in
    another batch composition, process or engine agree within ``rtol`` (relative, absolute
    floor ``rtol``, as :func:`close`); shapes and dtypes exactly."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)


def close(got, ref, rtol: float = RESIDUAL_RTOL, path: str = "") -> None:
    """Assert two JSON-like values are equal, floats within ``rtol`` (relative, absolute floor
    ``rtol``), everything else (strings, ints, bools, keys, lengths) exactly."""
    if isinstance(ref, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(ref, (int, float)), f"{path}: {got!r} != {ref!r}"
        assert math.isclose(got, ref, rel_tol=rtol, abs_tol=rtol), f"{path}: {got!r} != {ref!r} (rtol {rtol})"
    elif isinstance(ref, dict):
        assert isinstance(got, dict) and got.keys() == ref.keys(), f"{path}: keys {sorted(got)} != {sorted(ref)}"
        for k in ref:
            close(got[k], ref[k], rtol, f"{path}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(ref), f"{path}: {got!r} != {ref!r}"
        for i, (a, b) in enumerate(zip(got, ref)):
            close(a, b, rtol, f"{path}[{i}]")
    else:
        assert got == ref, f"{path}: {got!r} != {ref!r}"


def vae_outputs(det, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the detector's VAE residual map of ``img``, the pooled mean m and second moment s of
    the decodings it was computed from, float64, cropped to the image)."""
    from ssimae.inference import scorer

    seen = {}
    finish = scorer.finish

    def spy(shape, size, padded, outputs, residuals, ctx):
        seen.update({k: np.asarray(v, dtype=np.float64)[:size[0], :size[1]] for k, v in outputs.items()})
        return finish(shape, size, padded, outputs, residuals, ctx)

    scorer.finish = spy
    try:
        residual = det.residual_map(img)
    finally:
        scorer.finish = finish
    return residual, seen["recon"], seen["second_moment"]


def vae_residual_tolerance(x: np.ndarray, mean: np.ndarray, second: np.ndarray, residual: np.ndarray,
                           obs_var: float, rel: float = RESIDUAL_RTOL) -> np.ndarray:
    """(H, W) bound on the change of the VAE residual R = 0.5 log(2 pi v) + (x - m)^2 / (2 v),
    v = s - m^2 + obs_var, when the network's outputs m and s change by ``rel`` of their range
    (propagated to first order), plus ``rel`` of R's range for R's own float32 evaluation.

    Why not a flat tolerance: v = s - m^2 cancels (v ~ 0.004 where s ~ 0.1), and with obs_var
    0.01 |dR/dv| reaches ~5000, so differences of the outputs at the rounding level of
    :data:`RESIDUAL_RTOL` move R by far more than that on some pixels."""
    x = np.asarray(x, np.float64)
    v = np.maximum(second - mean**2, 0) + obs_var
    dr_dv = 1 / (2 * v) - (x - mean) ** 2 / (2 * v**2)
    dr_dm = -(x - mean) / v - 2 * mean * dr_dv
    return rel * (np.abs(dr_dm) * np.abs(mean).max() + np.abs(dr_dv) * np.abs(second).max()
                  + np.abs(residual).max())
