"""Inference: a trained model turned into residual maps and defect masks (the Python API).

    from ssimae import Detector
    det = Detector.load("runs/ssim")          # run folder or checkpoint file
    residual = det.residual_map(image)        # image: (H, W) float in [0, 1] -> (H, W)
    mask = det.segment(image)                 # (H, W) bool, at the stored threshold

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
from ssimae.models import Model, get_model
from ssimae.morphology import segment as segment_map
from ssimae.network import PATCH_SIZE
from ssimae.preprocess import pad_to_patch
from ssimae.residual import ResidualContext, residual_map
from ssimae.settings import InferenceSettings
from ssimae.window import sliding_window


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
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"expected a gray (H, W) image, got shape {image.shape}")
        s = self.settings
        x = s.preprocess.apply(image)
        h, w = x.shape
        t = torch.from_numpy(np.ascontiguousarray(pad_to_patch(x, PATCH_SIZE))).to(self.device)
        fn = self.model.patch_fn(self.network, self.params, s.seed)
        pooled = sliding_window(t, fn, PATCH_SIZE, s.stride, s.batch_size)
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

    def segment(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool defect mask: residual > threshold, then the opening."""
        t = self.threshold if threshold is None else threshold
        if t is None:
            raise SsimaeError("this checkpoint has no stored threshold (trained without validation images); "
                              "pass one explicitly (--threshold)")
        return segment_map(self.residual_map(image), t, self.opening_diameter)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a map back to an image's resolution (anti-aliased when shrinking)."""
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return sk_resize(a, shape, order=1, mode="edge", anti_aliasing=shrink, preserve_range=True)
