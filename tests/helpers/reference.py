"""Brute-force reference definitions shared by the tests."""
import numpy as np

from ssimae.core.morphology import disk


def brute_opening(x: np.ndarray, d: int) -> np.ndarray:
    """Set definition of the opening: the union of all translates of disk(d) whose part inside
    the image lies in ``x`` (pixels outside the image are ignored); every translate meeting
    the image is tried. Identity for d == 0."""
    if d == 0:
        return x.copy()
    offsets = np.argwhere(disk(d))
    h, w = x.shape
    out = np.zeros_like(x, dtype=bool)
    for zi in range(-d, h + 1):
        for zj in range(-d, w + 1):
            p = offsets + (zi, zj)
            p = p[(p[:, 0] >= 0) & (p[:, 0] < h) & (p[:, 1] >= 0) & (p[:, 1] < w)]
            if len(p) and x[p[:, 0], p[:, 1]].all():
                out[p[:, 0], p[:, 1]] = True
    return out
