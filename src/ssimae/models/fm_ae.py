"""The feature-matching autoencoder (Sec. 4.2): the l2 loss plus lambda times the squared
distance of the first three convolutional layers of an ImageNet AlexNet
(:mod:`ssimae.models.alexnet`) on input and reconstruction; scored with the l2 residual."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ssimae.errors import SsimaeError
from ssimae.models import Model, register_model
from ssimae.models.constants import FM_WEIGHT


@dataclass(frozen=True)
class FmParams:
    weight: float = field(default=FM_WEIGHT, metadata={
        "flag": "--fm-weight", "help": f"feature-matching weight lambda (default {FM_WEIGHT:g})"})
    alexnet_weights: str | None = field(default=None, metadata={
        "flag": "--alexnet-weights", "metavar": "PATH",
        "help": "fm: path of alexnet-owt-7be5be79.pth (else torch hub cache / download)"})

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight >= 0):
            raise SsimaeError(f"--fm-weight must be a number >= 0, got {self.weight!r}")


@register_model
class FeatureMatchingAE(Model):
    name = "fm"
    title = "FM-AE"
    Params = FmParams
    default_residual = "l2"
    compare_residuals = ("l2", "ssim")

    def prepare(self, params: FmParams) -> FmParams:
        """Find the AlexNet weights now (SsimaeError if missing), before any training."""
        from ssimae.models.alexnet import locate_alexnet_weights

        return replace(params, alexnet_weights=str(locate_alexnet_weights(params.alexnet_weights)))

    def loss(self, net, params: FmParams, device):
        from ssimae.models.alexnet import feature_matching_loss, load_alexnet_features, locate_alexnet_weights

        phi = load_alexnet_features(locate_alexnet_weights(params.alexnet_weights)).to(device)
        return lambda x: feature_matching_loss(x, net(x), phi, params.weight)
