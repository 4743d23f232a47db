"""The engine-independent steps of scoring one image, shared by the torch detector
(:class:`ssimae.detector.Detector`) and the ONNX runtime (:class:`ssimae.runtime.OnnxDetector`).

Between :func:`prepare` and :func:`finish` an engine only reconstructs the padded image
with :func:`ssimae.window.sliding_window`. Imports no torch; :func:`finish` accepts the
pooled outputs as torch tensors or numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize as sk_resize

from ssimae.errors import SsimaeError
from ssimae.morphology import segment as segment_map
from ssimae.preprocess import pad_to_patch
from ssimae.residual import ResidualContext, residual_map
from ssimae.window import PATCH_SIZE, is_torch_tensor


def prepare(image: np.ndarray, settings) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Check a gray image and apply the run's preprocessing (``settings.preprocess``) and
    the padding to a patch: (float32 image, padded float32 (H'', W''), preprocessed (h, w))."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a gray (H, W) image, got shape {image.shape}")
    x = settings.preprocess.apply(image)
    return image, np.ascontiguousarray(pad_to_patch(x, PATCH_SIZE)), x.shape


def finish(image_shape: tuple[int, int], size: tuple[int, int], padded, outputs: Mapping[str, Any],
           residuals, ctx: ResidualContext) -> tuple[np.ndarray, dict]:
    """From the padded image and the model's pooled outputs ({name: (H'', W'')}) to the
    reconstruction and the residual maps ``residuals`` at the input's resolution: residual
    on the whole padded image, padding cropped to ``size``, optional Gaussian smoothing
    (``ctx.settings.smooth``), resized back to ``image_shape``; all float32."""
    h, w = size
    recon = _float32(outputs["recon"][:h, :w])
    maps = {name: _float32(residual_map(name, padded, outputs, ctx)[:h, :w]) for name in residuals}
    smooth = ctx.settings.smooth
    if smooth > 0:
        maps = {k: ndi.gaussian_filter(v, smooth, mode="reflect") for k, v in maps.items()}
    if (h, w) != tuple(image_shape):
        recon = resize_map(recon, image_shape)
        maps = {k: resize_map(v, image_shape) for k, v in maps.items()}
    return recon.astype(np.float32), {k: v.astype(np.float32) for k, v in maps.items()}


def _float32(a) -> np.ndarray:
    """A tensor (any device) or array as a float32 numpy array."""
    return a.float().cpu().numpy() if is_torch_tensor(a) else np.asarray(a, dtype=np.float32)


def resize_map(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map back to an image's resolution (anti-aliased when shrinking)."""
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True)


@dataclass
class Analysis:
    """Reconstruction and residual map of one image, both (H, W) float32 at its resolution."""

    reconstruction: np.ndarray
    residual: np.ndarray


@dataclass
class Prediction:
    """Residual map (H, W) float32 and defect mask (H, W) bool of one image, and the threshold."""

    residual: np.ndarray
    mask: np.ndarray
    threshold: float


class Scorer:
    """What every engine's detector offers on top of its :meth:`analyze_many` (one
    reconstruction, several residual maps) and its ``settings`` and ``default_residual``."""

    settings: Any

    @property
    def threshold(self) -> float | None:
        return self.settings.threshold

    @property
    def opening_diameter(self) -> int:
        return self.settings.opening_diameter

    def analyze_many(self, image: np.ndarray, residuals=("l2", "ssim")) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def analyze(self, image: np.ndarray, residual: str | None = None) -> Analysis:
        """Reconstruct ``image`` ((H, W) float in [0, 1]) and compute its residual map
        (``residual``: a name in :data:`ssimae.residual.RESIDUALS`; default: the run's)."""
        name = residual or self.default_residual
        recon, maps = self.analyze_many(image, (name,))
        return Analysis(recon, maps[name])

    def residual_map(self, image: np.ndarray, residual: str | None = None) -> np.ndarray:
        """(H, W) residual map at the input's resolution (larger = more likely defect)."""
        return self.analyze(image, residual).residual

    def predict(self, image: np.ndarray, threshold: float | None = None) -> Prediction:
        """Residual map and defect mask (residual > threshold, then the opening) of ``image``;
        ``threshold`` defaults to the stored one."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            raise SsimaeError("this model has no stored threshold (trained without validation images); "
                              "pass one explicitly (--threshold)")
        residual = self.residual_map(image)
        return Prediction(residual, segment_map(residual, t, self.opening_diameter), float(t))

    def segment(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool defect mask: residual > threshold, then the opening."""
        return self.predict(image, threshold).mask
