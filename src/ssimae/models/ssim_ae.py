"""The SSIM-autoencoder (Sec. 3): trained with 1 - mean SSIM, scored with the SSIM residual."""
from __future__ import annotations

from dataclasses import dataclass, field

from ssimae.models import Model, register_model
from ssimae.core.ssim import SsimOptions


@dataclass(frozen=True)
class SsimParams:
    """ssim: the SSIM of the loss (K = 11, alpha = beta = gamma = 1, as the residual's)."""

    ssim: SsimOptions = field(default_factory=SsimOptions)


@register_model
class SsimAE(Model):
    name = "ssim"
    title = "SSIM-AE"
    Params = SsimParams
    default_residual = "ssim"
    compare_residuals = ("ssim", "l2")

    def loss(self, net, params: SsimParams, device):
        from ssimae.core.ssim_torch import ssim_loss

        opts = params.ssim.kwargs()
        return lambda x: ssim_loss(net(x), x, **opts)
