"""Inference: a trained model turned into residual maps and defect masks (the Python API).

    from ssimae import Detector
    det = Detector.load("runs/ssim")          # run folder or checkpoint file
    residual = det.residual_map(image)        # image: (H, W) float in [0, 1] -> (H, W); (H, W, 3) if --color
    mask = det.segment(image)                 # (H, W) bool, at the stored threshold
    p = det.predict("part.png")               # Prediction: score, defective, mask, regions
    ps = det.predict_many(paths)              # patches of several images batched together

Pipeline for one image (Sec. 4.2): optional resize (the training preprocessing) ->
reflection padding if smaller than a 128x128 patch -> sliding-window reconstruction at
stride 30 with overlapping outputs averaged (the model's per-patch inference, e.g. the
VAE's N samples; or, beyond the paper, ``tiling = "whole"``: one pass per mask over the
whole image for a fully convolutional model) -> residual map (:mod:`ssimae.core.residual`) on the whole image -> padding
cropped -> optional Gaussian smoothing (``smooth``) -> resized back to the input's
resolution. Segmentation: residual > threshold, then an opening with a disk of diameter 4.
All settings come from :class:`ssimae.runs.settings.InferenceSettings`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ssimae.inference import scorer as scoring
from ssimae.runs.checkpoint import Run, load_run
from ssimae.errors import SsimaeError, one_line
from ssimae.models import Model, get_model
from ssimae.models.device import pick_device  # noqa: F401  (re-exported)
from ssimae.core.residual import ResidualContext
from ssimae.inference.scorer import IMAGES_PER_BATCH, Analysis  # noqa: F401  (re-exported)
from ssimae.runs.settings import InferenceSettings


@dataclass(frozen=True)
class TorchOptions:
    """How the torch engine runs the network (speed only; the maps agree to float rounding).

    channels_last: the network's weights and inputs in the NHWC memory format.
    compile: the network compiled by ``torch.compile`` (the first images pay its compile time)."""

    channels_last: bool = False
    compile: bool = False


class Detector(scoring.Scorer):
    """A trained network with its model and inference settings: scores images.

    network: the trained module; model: a registered model (or its name); settings: the
    inference settings (default: the paper's); params: the model's hyperparameters
    (default: its defaults).
    """

    engine = "torch"

    def __init__(self, network: torch.nn.Module, model: str | Model, settings: InferenceSettings | None = None,
                 params=None, device: str | torch.device | None = None, options: TorchOptions | None = None):
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.network = network.to(self.device).eval()
        self.model = get_model(model) if isinstance(model, str) else model
        self.settings = settings if settings is not None else InferenceSettings()
        self.params = params if params is not None else self.model.Params()
        self.options = options if options is not None else TorchOptions()
        self.model.with_test_params(self.params, self.settings.model_params)  # checked before any image
        scoring.check_tiling(self.settings, self.model.geometry(self.params), self.title)
        self._run_net = self._prepare_network()

    def _prepare_network(self) -> torch.nn.Module:
        """The network as ``options`` says: channels-last and/or compiled (``network`` stays as loaded)."""
        net = self.network
        if self.options.channels_last:
            import copy

            net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        return torch.compile(net, dynamic=True) if self.options.compile else net

    @classmethod
    def load(cls, run: str | os.PathLike | Run, device: str | None = None,
             options: TorchOptions | None = None) -> "Detector":
        """Load a run folder or checkpoint file, or a :class:`ssimae.runs.checkpoint.Run`
        already read (weights only; no code is executed); ``options``: :class:`TorchOptions`.
        A fused run (``ssimae fuse``) gives a :class:`ssimae.inference.fusion.FusedDetector`
        of Detectors (``options`` do not apply)."""
        from ssimae.inference.fusion import FusedDetector, is_fusion

        if not isinstance(run, Run) and is_fusion(run):
            return FusedDetector.load(run, "torch", device)
        run = load_run(run)
        train = run.settings.train
        model = get_model(train.model)
        try:
            network = model.build(train.latent_dim, train.params, train.norm,
                                  channels=run.settings.inference.preprocess.channels)
            network.load_state_dict(run.weights)
        except (KeyError, ValueError, RuntimeError) as e:
            raise SsimaeError(f"checkpoint does not match its model configuration ({one_line(e, 120)})",
                              run.path) from None
        return cls(network, model, run.settings.inference, train.params, device, options)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the model's pooled outputs (e.g. ("recon",))."""
        return self.model.outputs

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def title(self) -> str:
        """The model's name in words, e.g. "SSIM-AE"."""
        return self.model.title

    @property
    def default_residual(self) -> str:
        """The run's residual (the model's own unless the settings name another)."""
        return self.settings.residual or self.model.default_residual

    def _layout(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the network runs in (``options.channels_last``)."""
        return batch.contiguous(memory_format=torch.channels_last) if self.options.channels_last else batch

    @torch.no_grad()
    def reconstruct(self, padded: list[torch.Tensor]) -> list[torch.Tensor]:
        """The model's pooled outputs ((len(outputs) * C, H, W) each) of preprocessed, padded
        images ((H, W) or (C, H, W) tensors on the device), as ``settings.tiling`` says
        (:func:`ssimae.inference.scorer.reconstruct`)."""
        s = self.settings
        params = self.model.with_test_params(self.params, s.model_params)
        layout, whole = self._layout, s.tiling == "whole"
        fn = (self.model.image_fn if whole else self.model.patch_fn)(self._run_net, params, s.seed)
        masks = self.model.pass_masks(params) if whole else None
        return scoring.reconstruct(padded, s, self.model.geometry(params), lambda b: fn(layout(b)),
                                   lambda b, m: fn(layout(b), m), masks, self.title)

    @torch.no_grad()
    def analyze_batch(self, images, residuals=("l2", "ssim")) -> list[tuple[np.ndarray, dict]]:
        """``analyze_many`` (one reconstruction, (H, W) or (H, W, 3) for color, and several
        (H, W) residual maps, at the input's resolution) of several images, their patches sent through the network
        together (batches of ``settings.batch_size`` patches). For deterministic models the
        maps equal those of one image at a time; the VAE's samples depend on the batching."""
        s = self.settings
        prepared = [scoring.prepare(im, s) for im in images]
        ts = [torch.from_numpy(padded).to(self.device) for _, padded, _ in prepared]
        pooled = self.reconstruct(ts)
        ctx = ResidualContext(s, self.model.with_test_params(self.params, s.model_params))
        channels = s.preprocess.channels
        return [scoring.finish(image.shape, size, t, scoring.named_outputs(p, self.model.outputs, channels),
                               residuals, ctx)
                for (image, _, size), t, p in zip(prepared, ts, pooled)]
