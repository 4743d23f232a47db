"""Inference: a trained model turned into residual maps and defect masks (the Python API).

    from ssimae import Detector
    det = Detector.load("runs/ssim")          # run folder or checkpoint file
    residual = det.residual_map(image)        # image: (H, W) float in [0, 1] -> (H, W)
    mask = det.segment(image)                 # (H, W) bool, at the stored threshold
    p = det.predict("part.png")               # Prediction: score, defective, mask, regions
    ps = det.predict_many(paths)              # patches of several images batched together

Pipeline for one image (Sec. 4.2): optional resize (the training preprocessing) ->
reflection padding if smaller than a 128x128 patch -> sliding-window reconstruction at
stride 30 with overlapping outputs averaged (the model's per-patch inference, e.g. the
VAE's N samples) -> residual map (:mod:`ssimae.residual`) on the whole image -> padding
cropped -> optional Gaussian smoothing (``smooth``) -> resized back to the input's
resolution. Segmentation: residual > threshold, then an opening with a disk of diameter 4.
All settings come from :class:`ssimae.settings.InferenceSettings`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.transform import resize as sk_resize

from ssimae.checkpoint import load_checkpoint
from ssimae.errors import SsimaeError
from ssimae.images import read_image
from ssimae.models import Model, get_model
from ssimae.morphology import gray_opening
from ssimae.morphology import segment as segment_map
from ssimae.network import PATCH_SIZE
from ssimae.preprocess import pad_to_patch
from ssimae.residual import ResidualContext, residual_map
from ssimae.settings import InferenceSettings
from ssimae.verdicts import Prediction, find_regions
from ssimae.window import sliding_window_many


IMAGES_PER_BATCH = 8  # images whose patches predict_many (and ``ssimae predict``) batch together


def pick_device(name: str | None = None) -> torch.device:
    """'auto'/None -> CUDA if available, else CPU; otherwise the named device."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Analysis:
    """Reconstruction and residual map of one image, both (H, W) float32 at its resolution."""

    reconstruction: np.ndarray
    residual: np.ndarray


class Detector:
    """A trained network with its model and inference settings: scores images.

    network: the trained module; model: a registered model (or its name); settings: the
    inference settings (default: the paper's); params: the model's hyperparameters
    (default: its defaults).
    """

    def __init__(self, network: torch.nn.Module, model: str | Model, settings: InferenceSettings | None = None,
                 params=None, device: str | torch.device | None = None):
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.network = network.to(self.device).eval()
        self.model = get_model(model) if isinstance(model, str) else model
        self.settings = settings if settings is not None else InferenceSettings()
        self.params = params if params is not None else self.model.Params()

    @classmethod
    def load(cls, run: str | os.PathLike, device: str | None = None) -> "Detector":
        """Load a run folder or checkpoint file (weights only; no code is executed)."""
        ckpt = load_checkpoint(run)
        train = ckpt["settings"].train
        model = get_model(train.model)
        try:
            network = model.build(train.latent_dim, train.params, train.norm)
            network.load_state_dict(ckpt["model"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise SsimaeError(f"checkpoint does not match its model configuration ({str(e).splitlines()[0][:120]})",
                              run) from None
        return cls(network, model, ckpt["settings"].inference, train.params, device)

    @property
    def threshold(self) -> float | None:
        return self.settings.threshold

    @property
    def opening_diameter(self) -> int:
        return self.settings.opening_diameter

    @property
    def default_residual(self) -> str:
        """The run's residual (the model's own unless the settings name another)."""
        return self.settings.residual or self.model.default_residual

    @torch.no_grad()
    def analyze(self, image: np.ndarray, residual: str | None = None) -> Analysis:
        """Reconstruct ``image`` ((H, W) float in [0, 1]) and compute its residual map
        (``residual``: a name in :data:`ssimae.residual.RESIDUALS`; default: the run's)."""
        name = residual or self.default_residual
        recon, maps = self.analyze_many(image, (name,))
        return Analysis(recon, maps[name])

    @torch.no_grad()
    def analyze_many(self, image: np.ndarray, residuals=("l2", "ssim")) -> tuple[np.ndarray, dict]:
        """One reconstruction of ``image`` and several residual maps of it:
        ((H, W) reconstruction, {name: (H, W) residual}), all at the input's resolution."""
        return self.analyze_batch([image], residuals)[0]

    @torch.no_grad()
    def analyze_batch(self, images, residuals=("l2", "ssim")) -> list[tuple[np.ndarray, dict]]:
        """:meth:`analyze_many` of several images, their patches sent through the network
        together (batches of ``settings.batch_size`` patches). For deterministic models the
        maps equal those of one image at a time; the VAE's samples depend on the batching."""
        images = [np.asarray(im, dtype=np.float32) for im in images]
        for im in images:
            if im.ndim != 2:
                raise ValueError(f"expected a gray (H, W) image, got shape {im.shape}")
        s = self.settings
        xs = [s.preprocess.apply(im) for im in images]
        ts = [torch.from_numpy(np.ascontiguousarray(pad_to_patch(x, PATCH_SIZE))).to(self.device) for x in xs]
        fn = self.model.patch_fn(self.network, self.params, s.seed)
        pooled = sliding_window_many(ts, fn, PATCH_SIZE, s.stride, s.batch_size)
        return [self._finish(im, x.shape, t, p, residuals) for im, x, t, p in zip(images, xs, ts, pooled)]

    def _finish(self, image: np.ndarray, shape, t: torch.Tensor, pooled: torch.Tensor, residuals):
        """Residual maps of one image from its pooled outputs; padding cropped, smoothed and
        resized back to the image's resolution."""
        h, w = shape
        s = self.settings
        outputs = dict(zip(self.model.outputs, pooled))
        ctx = ResidualContext(s, self.params)
        recon = outputs["recon"][:h, :w].float().cpu().numpy()
        maps = {name: residual_map(name, t, outputs, ctx)[:h, :w].float().cpu().numpy() for name in residuals}
        if s.smooth > 0:
            maps = {k: ndi.gaussian_filter(v, s.smooth, mode="reflect") for k, v in maps.items()}
        if (h, w) != image.shape:
            recon = _resize(recon, image.shape)
            maps = {k: _resize(v, image.shape) for k, v in maps.items()}
        return recon.astype(np.float32), {k: v.astype(np.float32) for k, v in maps.items()}

    def residual_map(self, image: np.ndarray, residual: str | None = None) -> np.ndarray:
        """(H, W) residual map at the input's resolution (larger = more likely defect)."""
        return self.analyze(image, residual).residual

    def _threshold(self, threshold: float | None) -> float:
        """``threshold``, else the stored one; SsimaeError when there is none."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            raise SsimaeError("this checkpoint has no stored threshold (trained without validation images); "
                              "pass one explicitly (--threshold)")
        return float(t)

    def segment(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool defect mask: residual > threshold, then the opening."""
        t = self._threshold(threshold)
        return segment_map(self.residual_map(image), t, self.opening_diameter)

    def predict(self, image, threshold: float | None = None, residual: str | None = None) -> Prediction:
        """Verdict on one image (an (H, W) float array in [0, 1] or an image file):
        score, defective, mask, residual map, regions (:mod:`ssimae.verdicts`)."""
        return self.predict_many([image], threshold, residual)[0]

    def predict_many(self, images, threshold: float | None = None, residual: str | None = None,
                     chunk: int = IMAGES_PER_BATCH) -> list[Prediction]:
        """:meth:`predict` of several images (arrays or files), ``chunk`` images at a time
        whose patches go through the network together."""
        t = self._threshold(threshold)
        name = residual or self.default_residual
        out = []
        for i in range(0, len(images), chunk):
            arrays = [read_image(im) if isinstance(im, (str, os.PathLike)) else im for im in images[i:i + chunk]]
            for recon, maps in self.analyze_batch(arrays, (name,)):
                out.append(self.verdict(maps[name], t, recon))
        return out

    def verdict(self, residual: np.ndarray, threshold: float, reconstruction: np.ndarray | None = None) -> Prediction:
        """The Prediction for an (H, W) residual map at ``threshold``."""
        opened = gray_opening(residual, self.opening_diameter)
        mask = opened > threshold
        return Prediction(float(opened.max()), float(threshold), mask, residual, find_regions(mask), reconstruction)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map back to an image's resolution (anti-aliased when shrinking)."""
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True)
