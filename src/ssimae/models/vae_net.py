"""The VAE's network on the Table 1 architecture (:mod:`ssimae.models.vae` is the model: its
settings, loss and per-patch inference), and its per-patch inference with the latent noise
as an input, for the ONNX export."""
from __future__ import annotations

import torch
from torch import nn

from ssimae.models.network import DEFAULT_LATENT_DIM, build_decoder, build_encoder, init_weights


class VAE(nn.Module):
    """Variational autoencoder on the same architecture (Kingma and Welling, 2014).

    The last encoder layer outputs 2*d channels: the mean and the log-variance of the
    diagonal Gaussian Q(z|x). The decoder gives the mean of P(x|z).
    """

    def __init__(self, latent_dim: int = DEFAULT_LATENT_DIM, norm: str = "none", channels: int = 1):
        super().__init__()
        self.latent_dim = latent_dim
        self.channels = channels
        self.encoder = build_encoder(latent_dim, in_channels=channels, out_multiplier=2, norm=norm)
        self.decoder = build_decoder(latent_dim, out_channels=channels, norm=norm)
        init_weights(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, 128, 128) -> mean, log-variance, each (B, d, 1, 1)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised draw z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the posterior mean (deterministic)."""
        mu, _ = self.encode(x)
        return self.decoder(mu)


class SampledVAE(nn.Module):
    """The VAE's per-patch inference with the latent noise as an input (for the ONNX export)."""

    def __init__(self, net: VAE):
        super().__init__()
        self.net = net

    def forward(self, patches: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.net.encode(patches)
        z = mu + torch.exp(0.5 * logvar) * noise  # (N, B, d, 1, 1), as VAE.sample
        n, b = noise.shape[0], noise.shape[1]
        y = self.net.decode(z.reshape(n * b, *mu.shape[1:])).reshape(n, b, *patches.shape[1:])
        return torch.cat([y.mean(0), (y * y).mean(0)], dim=1)
