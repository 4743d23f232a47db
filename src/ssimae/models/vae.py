"""The variational autoencoder (Kingma and Welling, 2014) on the Table 1 architecture, scored
by its reconstruction probability (An and Cho, 2015) over N = 6 latent samples (Sec. 4.2).

Loss: [sum (x - x_hat)^2 / (2 s^2) + kl_weight * KL(Q(z|x) || N(0, I))] / n_pixels, with the
decoder's likelihood P(x|z) a Gaussian of fixed variance s^2 = ``obs_var``. Inference
decodes N samples z ~ Q(z|x) per patch and returns their mean and second moment, which the
sliding window pools over all patches covering a pixel; the ``vae`` residual
(:func:`ssimae.core.residual.vae_residual`) turns them into a per-pixel negative log-likelihood.
The network: :class:`ssimae.models.vae_net.VAE`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ssimae.models import Model, register_model

SAMPLES = 6  # Sec. 4.2, N
MAX_SAMPLES = 1000  # a documented ceiling of --vae-samples


@dataclass(frozen=True)
class VaeParams:
    samples: int = field(default=SAMPLES, metadata={
        "flag": "--vae-samples", "help": f"VAE: latent samples N per patch (default {SAMPLES})"})
    obs_var: float = 0.01
    kl_weight: float = field(default=1.0, metadata={
        "flag": "--kl-weight", "help": "VAE: weight of the KL term (default 1)"})

    def __post_init__(self):
        from ssimae.errors import SsimaeError

        if not 1 <= self.samples <= MAX_SAMPLES:
            raise SsimaeError(f"--vae-samples must be in 1..{MAX_SAMPLES}, got {self.samples}")
        if not (math.isfinite(self.obs_var) and self.obs_var > 0):
            raise SsimaeError(f"the VAE's observation variance must be a positive number, got {self.obs_var}")
        if not (math.isfinite(self.kl_weight) and self.kl_weight >= 0):
            raise SsimaeError(f"--kl-weight must be a number >= 0, got {self.kl_weight}")


@register_model
class VariationalAE(Model):
    name = "vae"
    title = "VAE"
    Params = VaeParams
    default_residual = "vae"
    outputs = ("recon", "second_moment")

    def build(self, latent_dim, params, norm="none", channels=1):
        from ssimae.models.vae_net import VAE

        return VAE(latent_dim, norm, channels)

    def loss(self, net, params: VaeParams, device):
        def vae_loss(x):
            mu, logvar = net.encode(x)
            x_hat = net.decode(net.sample(mu, logvar))
            recon = ((x_hat - x) ** 2).flatten(1).sum(1) / (2 * params.obs_var)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).flatten(1).sum(1)
            return (recon + params.kl_weight * kl).mean() / x[0].numel()

        return vae_loss

    def patch_fn(self, net, params: VaeParams, seed: int):
        """Batch (B, C, h, w) -> (B, 2 C, h, w): mean and second moment of N decodings of z ~ Q(z|x), drawn
        from a generator seeded with seed (so a map does not depend on global RNG state)."""
        import torch

        device = next(net.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        n = params.samples

        def fn(batch: torch.Tensor) -> torch.Tensor:
            mu, logvar = net.encode(batch)
            total = torch.zeros_like(batch)
            total_sq = torch.zeros_like(batch)
            for _ in range(n):
                y = net.decode(net.sample(mu, logvar, gen))
                total += y
                total_sq += y * y
            return torch.cat([total / n, total_sq / n], dim=1)

        return fn

    def export_module(self, net, params: VaeParams):
        """patches (B, C, h, w), noise (N, B, d, 1, 1) -> (B, 2 C, h, w): :meth:`patch_fn` with
        its N draws of eps given as the noise input (the N decodings run as one batch)."""
        from ssimae.models.vae_net import SampledVAE

        return SampledVAE(net), (net.latent_dim, 1, 1)
