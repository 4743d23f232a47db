"""The engine-independent scorer: the steps of scoring one image and the API built on an
engine's :meth:`Scorer.analyze_batch`, shared by the torch detector
(:class:`ssimae.inference.detector.Detector`) and the ONNX runtime
(:class:`ssimae.inference.onnx_detector.OnnxDetector`).

Between :func:`prepare` and :func:`finish` an engine only reconstructs the padded images
with :func:`reconstruct` (the sliding window, or whole-image passes of a fully convolutional
network). Imports no torch; :func:`finish` accepts the pooled outputs as torch tensors or
numpy arrays.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize as sk_resize

from ssimae.errors import SsimaeError
from ssimae.core.morphology import gray_opening
from ssimae.core.morphology import segment as segment_map
from ssimae.core import verdict as verdicts
from ssimae.core.preprocess import pad_to_patch
from ssimae.core.residual import ResidualContext, residual_map
from ssimae.core.verdict import Prediction
from ssimae.core.masks import grid_masks
from ssimae.core.window import PATCH_SIZE, Geometry, check_whole, is_torch_tensor, sliding_window_many, whole_image
from ssimae.runs.inference_settings import NO_THRESHOLD

IMAGES_PER_BATCH = 8  # images whose patches predict_many (and ``ssimae predict``) batch together


def prepare(image: np.ndarray, settings) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Check an image ((H, W) gray, or (H, W, 3) RGB for a color run: :meth:`Preprocess.check`)
    and apply the run's preprocessing (``settings.preprocess``) and the padding to a patch:
    (float32 image, padded float32 (H'', W'') or channels-first (3, H'', W''), preprocessed (h, w)).
    An image over the ceilings of :meth:`Preprocess.check_cost` is refused (BadArray) before any work
    (:meth:`Preprocess.convert` at the run's stride)."""
    image = settings.preprocess.convert(image, stride=settings.stride)
    x = settings.preprocess.apply(image)
    padded = pad_to_patch(x, PATCH_SIZE)
    if padded.ndim == 3:
        padded = padded.transpose(2, 0, 1)
    return image, np.ascontiguousarray(padded), x.shape[:2]


def reconstruct(images: Sequence, settings, geometry: Geometry | None, patch_fn, image_fn,
                masks: Mapping[str, Any] | None = None, title: str = "this model") -> list:
    """The pooled outputs ((C_out, H, W) each) of padded images ((H, W) or (C, H, W), numpy
    arrays or torch tensors) as ``settings.tiling`` says: "window", ``patch_fn`` ((B, C, 128,
    128) -> (B, C_out, 128, 128)) over the sliding window at ``settings.stride``; "whole",
    ``image_fn`` ((1, C, h, w), masks) over each image (:func:`ssimae.core.window.whole_image`)
    in tiles of at most ``settings.tile_size``, with the grid masks of ``masks``
    (:func:`ssimae.core.masks.grid_masks` arguments) when the model hides cells."""
    check_tiling(settings, geometry, title)
    if settings.tiling == "window":
        return sliding_window_many(images, patch_fn, PATCH_SIZE, settings.stride, settings.batch_size)
    masks_for = None
    if masks is not None:
        masks_for = _last_size_cache(lambda h, w: grid_masks(h, w, masks["cell_sizes"], masks["sets"], masks["seed"]))
    return [whole_image(im, image_fn, geometry, settings.tile_size, masks_for) for im in images]


def check_tiling(settings, geometry: Geometry | None, title: str) -> None:
    """SsimaeError unless the model can be scored with ``settings.tiling``."""
    check_whole(settings.tiling, geometry, title)


def _last_size_cache(make):
    """``make(h, w)``, remembering the last size's result (images of a line share a size)."""
    last: dict = {}

    def get(h: int, w: int):
        if (h, w) not in last:
            last.clear()
            last[(h, w)] = make(h, w)
        return last[(h, w)]

    return get


def named_outputs(pooled, names, channels: int = 1) -> dict:
    """A model's pooled outputs ((len(names) * C, H, W), from the sliding window) by name:
    (H, W) each for gray (C = 1), (C, H, W) each for color."""
    if channels == 1:
        return dict(zip(names, pooled))
    return {n: pooled[i * channels:(i + 1) * channels] for i, n in enumerate(names)}


def finish(image_shape: tuple[int, ...], size: tuple[int, int], padded, outputs: Mapping[str, Any],
           residuals, ctx: ResidualContext) -> tuple[np.ndarray, dict]:
    """From the padded image and the model's pooled outputs (:func:`named_outputs`) to the
    reconstruction ((H, W), or (H, W, 3) for color) and the residual maps ``residuals``
    ((H, W) each) at the input's resolution: residual on the whole padded image, padding
    cropped to ``size``, optional Gaussian smoothing (``ctx.settings.smooth``), resized back
    to ``image_shape``; all float32."""
    h, w = size
    recon = _float32(outputs["recon"][..., :h, :w])
    if recon.ndim == 3:
        recon = np.ascontiguousarray(recon.transpose(1, 2, 0))
    maps = {name: _float32(residual_map(name, padded, outputs, ctx)[:h, :w]) for name in residuals}
    maps = {k: smooth_map(v, ctx.settings.smooth) for k, v in maps.items()}
    shape = tuple(image_shape[:2])
    if (h, w) != shape:
        recon = resize_map(recon, shape)
        maps = {k: resize_map(v, shape) for k, v in maps.items()}
    return recon.astype(np.float32), {k: v.astype(np.float32) for k, v in maps.items()}


def smooth_map(a: np.ndarray, sigma: float) -> np.ndarray:
    """The residual map's optional Gaussian smoothing (``smooth``; 0 = none), reflect borders."""
    return ndi.gaussian_filter(a, sigma, mode="reflect") if sigma > 0 else a


def _float32(a) -> np.ndarray:
    """A tensor (any device) or array as a float32 numpy array."""
    return a.float().cpu().numpy() if is_torch_tensor(a) else np.asarray(a, dtype=np.float32)


def resize_map(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map (H, W), or a color image (H, W, C), back to an image's
    resolution ``shape`` (H', W') (anti-aliased when shrinking)."""
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True)


class Scored(NamedTuple):
    """One image file scored by :meth:`Scorer.predict_files`: its path and either the image
    as read ((H, W) or (H, W, 3) float32 in [0, 1]) and its Prediction, or (with
    ``skip_bad``) the SsimaeError that made it unreadable."""

    path: Any
    image: np.ndarray | None
    prediction: Prediction | None
    error: SsimaeError | None = None


@dataclass
class Analysis:
    """Reconstruction ((H, W), or (H, W, 3) for color) and residual map ((H, W)) of one
    image, float32 at its resolution."""

    reconstruction: np.ndarray
    residual: np.ndarray


class Scorer:
    """What every engine's detector offers on top of its :meth:`analyze_many` (one
    reconstruction, several residual maps) and its ``settings`` and ``default_residual``."""

    settings: Any
    engine: str  # "torch" or "onnx"

    @property
    def model_name(self) -> str:
        """The registered model's name, e.g. "ssim"."""
        raise NotImplementedError

    def __repr__(self) -> str:
        """Model, residual, both thresholds and engine, e.g. ``Detector(model='ssim' (SSIM-AE),
        residual='ssim', image_threshold=0.8256, pixel_threshold=0.8266, engine='torch')``."""
        s = self.settings
        return (f"{type(self).__name__}(model={self.model_name!r} ({self.title}), residual={self.default_residual!r}, "
                f"image_threshold={_g(s.image_threshold)}, pixel_threshold={_g(s.threshold)}, engine={self.engine!r})")

    def with_settings(self, **changes) -> "Scorer":
        """A copy of this detector (sharing its network) whose settings have ``changes``
        (``dataclasses.replace``, so they are checked); this one is left as it is."""
        other = copy.copy(self)
        other.settings = dataclasses.replace(self.settings, **changes)
        return other

    @property
    def threshold(self) -> float | None:
        return self.settings.threshold

    @property
    def opening_diameter(self) -> int:
        return self.settings.opening_diameter

    def analyze_many(self, image: np.ndarray, residuals=("l2", "ssim")) -> tuple[np.ndarray, dict]:
        """One reconstruction and several residual maps of one image. An engine overrides
        this or :meth:`analyze_batch` (or both)."""
        return self.analyze_batch([image], residuals)[0]

    def analyze_batch(self, images, residuals=("l2", "ssim")) -> list[tuple[np.ndarray, dict]]:
        """:meth:`analyze_many` of several images (one at a time unless an engine batches them)."""
        return [self.analyze_many(im, residuals) for im in images]

    def analyze(self, image: np.ndarray, residual: str | None = None) -> Analysis:
        """Reconstruct ``image`` ((H, W) float in [0, 1]; (H, W, 3) for a color run) and compute its residual map
        (``residual``: a name in :data:`ssimae.core.residual.RESIDUALS`; default: the run's)."""
        name = residual or self.default_residual
        recon, maps = self.analyze_many(image, (name,))
        return Analysis(recon, maps[name])

    def residual_map(self, image: np.ndarray, residual: str | None = None) -> np.ndarray:
        """(H, W) residual map at the input's resolution (larger = more likely defect)."""
        return self.analyze(image, residual).residual

    def _threshold(self, threshold: float | None) -> float:
        """``threshold``, else the stored one; SsimaeError when there is none."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            raise SsimaeError(f"{NO_THRESHOLD}; "
                              "pass one explicitly (--threshold)")
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise SsimaeError(f"the threshold must be a number, got {t!r}") from None
        if math.isnan(t):
            raise SsimaeError("the threshold must be a number, got nan")
        return t

    def segment(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool defect mask: residual > threshold, then the opening."""
        return segment_map(self.residual_map(image), self._threshold(threshold), self.opening_diameter)

    def predict(self, image, threshold: float | None = None, residual: str | None = None) -> Prediction:
        """Verdict on one image (an (H, W) float array in [0, 1], (H, W, 3) for a color run, or an image file):
        score, defective, mask, residual map, regions (:mod:`ssimae.core.verdict`)."""
        return self.predict_many([image], threshold, residual)[0]

    def predict_many(self, images, threshold: float | None = None, residual: str | None = None,
                     chunk: int = IMAGES_PER_BATCH) -> list[Prediction]:
        """:meth:`predict` of several images (arrays or files), ``chunk`` images at a time
        whose patches go through the network together."""
        t = self._threshold(threshold)
        name = residual or self.default_residual
        out = []
        for i in range(0, len(images), chunk):
            arrays = [self.settings.preprocess.convert(im, stride=self.settings.stride) for im in images[i:i + chunk]]
            for recon, maps in self.analyze_batch(arrays, (name,)):
                out.append(self.verdict(maps[name], t, recon))
        return out

    def predict_files(self, files: Sequence[str | os.PathLike], threshold: float | None = None,
                      residual: str | None = None, *, skip_bad: bool = False,
                      chunk: int = IMAGES_PER_BATCH) -> Iterator[Scored]:
        """:meth:`predict` of image files, in order, ``chunk`` files at a time whose patches go
        through the network together: one :class:`Scored` per file. ``skip_bad``: an unreadable
        file yields its error instead of raising it."""
        t = self._threshold(threshold)
        name = residual or self.default_residual
        read = self.read
        for i in range(0, len(files), chunk):
            part = files[i:i + chunk]
            loaded = [_read(read, f, skip_bad) for f in part]
            good = [im for im, _ in loaded if im is not None]
            results = iter(self.analyze_batch(good, (name,)) if good else [])
            for f, (im, err) in zip(part, loaded):
                if im is None:
                    yield Scored(f, None, None, err)
                else:
                    recon, maps = next(results)
                    yield Scored(f, im, self.verdict(maps[name], t, recon))

    def read(self, path: str | os.PathLike) -> np.ndarray:
        """An image file as this run reads it (:meth:`Preprocess.read`), refused (SsimaeError
        naming the file) when scoring it would cost more than the ceilings of
        :meth:`Preprocess.check_cost`."""
        return self.settings.preprocess.convert(path, stride=self.settings.stride)

    def verdict(self, residual: np.ndarray, threshold: float, reconstruction: np.ndarray | None = None) -> Prediction:
        """The Prediction for an (H, W) residual map at ``threshold``."""
        s = self.settings
        return verdicts.verdict(residual, gray_opening(residual, self.opening_diameter), threshold, reconstruction,
                                s.image_threshold, s.image_score)


def _g(value: float | None) -> str:
    """A threshold for a repr: 6 significant digits, or None."""
    return "None" if value is None else f"{value:.6g}"


def _read(read, path, skip_bad: bool) -> tuple[np.ndarray | None, SsimaeError | None]:
    """(image, None) as ``read`` reads ``path``; with ``skip_bad``, (None, error) for an unreadable one."""
    try:
        return read(path), None
    except SsimaeError as err:
        if not skip_bad:
            raise
        return None, err
