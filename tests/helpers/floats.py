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


def near(value: float, threshold: float, rtol: float = RESIDUAL_RTOL) -> bool:
    """True when ``value`` is within the rounding tolerance of ``threshold`` (a verdict at it may flip)."""
    return abs(value - threshold) <= rtol * max(1.0, abs(threshold))


def flippable(opened: np.ndarray, threshold: float, rtol: float = RESIDUAL_RTOL) -> np.ndarray:
    """(H, W) bool: pixels of an opened residual map whose mask value (``opened > threshold``)
    may flip under the rounding tolerance. The opening is 1-Lipschitz in the max norm (a max of
    mins), so a residual perturbed by at most delta gives an opened map perturbed by at most delta."""
    return np.abs(np.asarray(opened, np.float64) - threshold) <= rtol * max(1.0, abs(threshold))


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
