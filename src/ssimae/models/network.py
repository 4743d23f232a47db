"""The network of Table 1 (Bergmann et al., VISAPP 2019), shared by all four models.

Encoder (the table, verbatim): 128x128x1 input, nine convolutions, latent vector of size d.
Decoder: the encoder reversed, with transposed convolutions where the encoder shrinks the
image (the strided 4x4 layers and the final 8x8 -> 1x1 layer). Leaky ReLU with slope 0.2
after every layer except the last layer of the encoder and of the decoder, which are linear.

Images are gray, float in [0, 1], shape (B, 1, 128, 128); a color run (``--color``, beyond
the paper) has 3 input and output channels, (B, 3, 128, 128). The VAE's variant (an encoder
with 2d outputs) is in :mod:`ssimae.models.vae_net`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssimae.core.window import PATCH_SIZE  # noqa: F401  (Table 1 input size; defined torch-free there)
from ssimae.models.constants import DEFAULT_LATENT_DIM, NORMS  # noqa: F401  (defined torch-free there)

LEAKY_SLOPE = 0.2  # Table 1 caption


class Layer(NamedTuple):
    """One row of Table 1: output channels (None = latent d), kernel, stride, padding."""

    name: str
    out_channels: int | None
    kernel: int
    stride: int
    padding: int


# Table 1 of the paper, row by row. out_channels=None is the latent dimension d.
TABLE1 = (
    Layer("conv1", 32, 4, 2, 1),
    Layer("conv2", 32, 4, 2, 1),
    Layer("conv3", 32, 3, 1, 1),
    Layer("conv4", 64, 4, 2, 1),
    Layer("conv5", 64, 3, 1, 1),
    Layer("conv6", 128, 4, 2, 1),
    Layer("conv7", 64, 3, 1, 1),
    Layer("conv8", 32, 3, 1, 1),
    Layer("conv9", None, 8, 1, 0),
)


def _channels(latent_dim: int, in_channels: int) -> list[int]:
    """[in, c1, ..., c9] channel counts along the encoder."""
    return [in_channels] + [latent_dim if l.out_channels is None else l.out_channels for l in TABLE1]



def _hidden(out_channels: int, norm: str) -> list[nn.Module]:
    """What follows a hidden convolution: [BatchNorm2d if norm == "batch"], leaky ReLU 0.2."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r} (expected one of {', '.join(NORMS)})")
    return ([nn.BatchNorm2d(out_channels)] if norm == "batch" else []) + [nn.LeakyReLU(LEAKY_SLOPE)]


class LatentConv2d(nn.Conv2d):
    """conv9 of Table 1 (an 8x8 kernel without padding on an 8x8 map: (B, 32, 8, 8) ->
    (B, d, 1, 1)), a fully connected layer written as a convolution. It is computed as
    one matrix product: the same numbers as the convolution up to float rounding
    (tests/unit/models/test_model.py), about 2.5x faster on a CPU, forward and backward
    (benchmarks/bench_kernels.py). Other input sizes use the convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.kernel_size or self.padding != (0, 0):
            return super().forward(x)
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[..., None, None]


class LatentConvTranspose2d(nn.ConvTranspose2d):
    """The decoder's first layer, conv9 transposed ((B, d, 1, 1) -> (B, 32, 8, 8)),
    computed as one matrix product like :class:`LatentConv2d`."""

    def forward(self, z: torch.Tensor, output_size=None) -> torch.Tensor:
        if tuple(z.shape[-2:]) != (1, 1) or self.padding != (0, 0) or output_size is not None:
            return super().forward(z, output_size)
        out = (z.flatten(1) @ self.weight.flatten(1)).view(z.shape[0], self.out_channels, *self.kernel_size)
        return out if self.bias is None else out + self.bias[:, None, None]


def build_encoder(latent_dim: int = DEFAULT_LATENT_DIM, in_channels: int = 1, out_multiplier: int = 1,
                  norm: str = "none") -> nn.Sequential:
    """Encoder of Table 1: (B, in_channels, 128, 128) -> (B, latent_dim * out_multiplier, 1, 1).

    ``out_multiplier=2`` gives the VAE's mean and log-variance in one output. ``norm="batch"``
    adds batch normalisation after every hidden convolution: an option beyond the paper
    (Table 1 has none), off by default.
    """
    ch = _channels(latent_dim, in_channels)
    layers: list[nn.Module] = []
    for i, spec in enumerate(TABLE1):
        last = i == len(TABLE1) - 1
        out = ch[i + 1] * (out_multiplier if last else 1)
        conv = LatentConv2d if last else nn.Conv2d
        layers.append(conv(ch[i], out, spec.kernel, spec.stride, spec.padding))
        if not last:
            layers += _hidden(out, norm)
    return nn.Sequential(*layers)


def build_decoder(latent_dim: int = DEFAULT_LATENT_DIM, out_channels: int = 1, norm: str = "none") -> nn.Sequential:
    """Decoder = the encoder reversed: (B, latent_dim, 1, 1) -> (B, out_channels, 128, 128).

    A layer that shrinks the image in the encoder (stride 2, or the 8x8 kernel without
    padding) becomes a transposed convolution with the same kernel, stride and padding;
    the size-preserving 3x3 layers stay plain convolutions.
    """
    ch = _channels(latent_dim, out_channels)
    layers: list[nn.Module] = []
    for j, i in enumerate(reversed(range(len(TABLE1)))):
        spec = TABLE1[i]
        first_in, out = ch[i + 1], ch[i]
        shrinks = spec.stride > 1 or spec.padding * 2 < spec.kernel - 1
        conv = (LatentConvTranspose2d if j == 0 else nn.ConvTranspose2d) if shrinks else nn.Conv2d
        layers.append(conv(first_in, out, spec.kernel, spec.stride, spec.padding))
        if j != len(TABLE1) - 1:
            layers += _hidden(out, norm)
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """He-normal initialisation for leaky ReLU (slope 0.2), zero biases.

    The paper does not state an initialisation. PyTorch's default (uniform with a=sqrt(5))
    shrinks the signal through the 18 layers: on our demo texture the autoencoder then
    outputs the same flat image for every input for >16k patches (pixel AUC stuck at 0.77),
    while with this initialisation it reaches 0.89 after 9.6k patches (measured, see the
    README). Convolutions use fan-in; transposed convolutions use fan-out, i.e.
    in_channels * k * k, the fan-in of the convolution they transpose.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            mode = "fan_in" if isinstance(m, nn.Conv2d) else "fan_out"
            nn.init.kaiming_normal_(m.weight, a=LEAKY_SLOPE, mode=mode, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


class AutoEncoder(nn.Module):
    """Deterministic autoencoder (the l2-, SSIM- and feature-matching AE)."""

    def __init__(self, latent_dim: int = DEFAULT_LATENT_DIM, norm: str = "none", channels: int = 1):
        super().__init__()
        self.latent_dim = latent_dim
        self.channels = channels
        self.encoder = build_encoder(latent_dim, in_channels=channels, norm=norm)
        self.decoder = build_decoder(latent_dim, out_channels=channels, norm=norm)
        init_weights(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 128, 128) -> reconstruction of the same shape (C = ``channels``: 1 gray, 3 color)."""
        return self.decoder(self.encoder(x))
