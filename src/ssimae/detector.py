"""Inference: a trained model turned into residual maps and defect masks (the Python API).

    from ssimae import Detector
    det = Detector.load("runs/ssim")          # run folder or checkpoint file
    residual = det.residual_map(image)        # image: (H, W) float in [0, 1] -> (H, W)
    mask = det.segment(image)                 # (H, W) bool, at the stored threshold

Pipeline for one image (Sec. 4.2): optional resize (the training preprocessing) ->
reflection padding if smaller than a 128x128 patch -> sliding-window reconstruction at
stride 30 with overlapping outputs averaged -> residual map (l2, SSIM or VAE) on the
whole image -> padding cropped -> resized back to the input's resolution. Segmentation:
residual > threshold, then an opening with a disk of diameter 4.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from skimage.transform import resize as sk_resize

from ssimae.checkpoint import load_checkpoint
from ssimae.errors import SsimaeError
from ssimae.model import PATCH_SIZE, VAE, build_model
from ssimae.morphology import segment as segment_map
from ssimae.patches import Preprocess, pad_to_patch
from ssimae.residual import DEFAULT_RESIDUAL, residual_map
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
    """A trained autoencoder with the settings needed to score images."""

    def __init__(self, model: torch.nn.Module, config: dict, threshold: float | None = None,
                 device: str | torch.device | None = None):
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.config = config
        self.kind = config["model"]
        self.threshold = threshold
        self.preprocess = Preprocess.from_dict(config.get("preprocess") or {})
        self.stride = int(config.get("stride", 30))
        self.opening_diameter = int(config.get("opening_diameter", 4))
        self.ssim_kwargs = dict(config.get("ssim") or {})
        self.vae_samples = int(config.get("vae_samples", 6))
        self.vae_obs_var = float(config.get("vae_obs_var", 0.01))
        self.seed = int(config.get("seed", 0))
        self.batch_size = int(config.get("infer_batch_size", 64))

    @classmethod
    def load(cls, run: str | os.PathLike, device: str | None = None) -> "Detector":
        """Load a run folder or checkpoint file (weights only; no code is executed)."""
        ckpt = load_checkpoint(run)
        config = ckpt["config"]
        try:
            model = build_model(config["model"], int(config["latent_dim"]))
            model.load_state_dict(ckpt["model"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise SsimaeError(f"checkpoint does not match its model configuration ({str(e).splitlines()[0][:120]})",
                              run) from None
        return cls(model, config, ckpt.get("threshold"), device)

    @property
    def default_residual(self) -> str:
        return DEFAULT_RESIDUAL[self.kind]

    def _patch_fn(self, generator: torch.Generator | None):
        if not isinstance(self.model, VAE):
            return self.model
        n = self.vae_samples

        def fn(batch: torch.Tensor) -> torch.Tensor:
            mu, logvar = self.model.encode(batch)
            total = torch.zeros_like(batch)
            total_sq = torch.zeros_like(batch)
            for _ in range(n):
                y = self.model.decode(self.model.sample(mu, logvar, generator))
                total += y
                total_sq += y * y
            return torch.cat([total / n, total_sq / n], dim=1)

        return fn

    @torch.no_grad()
    def analyze(self, image: np.ndarray, residual: str | None = None) -> Analysis:
        """Reconstruct ``image`` ((H, W) float in [0, 1]) and compute its residual map
        (``residual``: 'l2', 'ssim' or 'vae'; default: the model's own)."""
        kind = residual or self.default_residual
        recon, maps = self.analyze_many(image, (kind,))
        return Analysis(recon, maps[kind])

    @torch.no_grad()
    def analyze_many(self, image: np.ndarray, residuals=("l2", "ssim")) -> tuple[np.ndarray, dict]:
        """One reconstruction of ``image`` and several residual maps of it:
        ((H, W) reconstruction, {kind: (H, W) residual}), all at the input's resolution."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"expected a gray (H, W) image, got shape {image.shape}")
        x = self.preprocess.apply(image)
        h, w = x.shape
        xp = pad_to_patch(x, PATCH_SIZE)
        t = torch.from_numpy(np.ascontiguousarray(xp)).to(self.device)
        gen = None
        if isinstance(self.model, VAE):
            gen = torch.Generator(device=self.device).manual_seed(self.seed)
        outputs = sliding_window(t, self._patch_fn(gen), PATCH_SIZE, self.stride, self.batch_size)
        recon = outputs[0, :h, :w].float().cpu().numpy()
        maps = {}
        for kind in residuals:
            res = residual_map(kind, t, outputs, self.ssim_kwargs, self.vae_obs_var)
            maps[kind] = res[:h, :w].float().cpu().numpy()
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
