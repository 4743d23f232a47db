"""The l2-autoencoder, the paper's baseline: trained and scored with the per-pixel squared error
(summed over the channels of a color run)."""
from __future__ import annotations

from ssimae.models import Model, register_model


@register_model
class L2AE(Model):
    name = "l2"
    title = "l2-AE"
    default_residual = "l2"
    compare_residuals = ("l2", "ssim")

    def loss(self, net, params, device):
        import torch

        # mean over pixels of the squared error summed over channels (x.shape[1]: 1 gray, 3 color)
        return lambda x: torch.mean((net(x) - x) ** 2) * x.shape[1]
