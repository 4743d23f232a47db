"""The networks of the inpainting model (:mod:`ssimae.models.inpaint`, RIAD) and of DRAEM: the
hidden-cell masks, the U-Net, and the composed reconstruction of inference (:class:`Inpainter`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssimae.models.inpaint import LEVELS, WIDTH


# --- masks ----------------------------------------------------------------------------------

def cell_assignment(height: int, width: int, cell: int, sets: int, generator: torch.Generator | None = None,
                    device=None) -> torch.Tensor:
    """(H, W) int64 map of pixel -> set index in [0, sets): the grid of ``cell`` x ``cell``
    cells anchored at the top-left corner (partial cells at the right and bottom borders),
    the cells shuffled and dealt to the sets in turn (so set sizes differ by at most one
    cell). Every pixel belongs to exactly one set."""
    rows, cols = -(-height // cell), -(-width // cell)
    perm = torch.randperm(rows * cols, generator=generator, device="cpu")
    grid = (perm % sets).reshape(rows, cols)
    full = grid.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:height, :width]
    return full.to(device) if device is not None else full


def set_masks(assign: torch.Tensor, sets: int) -> torch.Tensor:
    """(H, W) set map -> (sets, H, W) float masks, 1 where a pixel is hidden in that pass."""
    return (assign[None] == torch.arange(sets, device=assign.device)[:, None, None]).float()


def inference_assignments(size: int, cell_sizes, sets: int, seed: int) -> list[torch.Tensor]:
    """The set maps of sliding-window inference: one (size, size) :func:`cell_assignment` per
    cell size, drawn in turn from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [cell_assignment(size, size, k, sets, gen) for k in cell_sizes]


def inference_masks(size: int, cell_sizes, sets: int, seed: int) -> torch.Tensor:
    """The fixed masks of sliding-window inference: (len(cell_sizes) * sets, 1, size, size),
    one cell size's ``sets`` masks after the other (:func:`inference_assignments`)."""
    return torch.cat([set_masks(a, sets) for a in inference_assignments(size, cell_sizes, sets, seed)])[:, None]


# --- network --------------------------------------------------------------------------------

def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W); H, W multiples of 2^(levels-1).
    ``skips=False``: the same encoder-decoder without the skip concatenations (a plain
    autoencoder with a spatial bottleneck). ``sigmoid``: outputs in [0, 1] (else logits)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = WIDTH, levels: int = LEVELS,
                 skips: bool = True, sigmoid: bool = True):
        super().__init__()
        widths = [width * 2**i for i in range(levels)]
        self.skips, self.sigmoid = skips, sigmoid
        self.down = nn.ModuleList([_double_conv(c_in, c) for c_in, c in zip([in_channels] + widths[:-1], widths)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in widths[:0:-1]])
        self.merge = nn.ModuleList([_double_conv(c if skips else c // 2, c // 2) for c in widths[:0:-1]])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = up(x)
            x = merge(torch.cat([skips.pop(), x], dim=1) if self.skips else x)
        y = self.head(x)
        return torch.sigmoid(y) if self.sigmoid else y


def unet_flops(size: int = 128, in_channels: int = 1, width: int = WIDTH, levels: int = LEVELS,
               skips: bool = True) -> int:
    """2 x multiply-adds of one forward pass of :class:`UNet` (one output channel) on a
    size x size patch: convolutions only (BatchNorm, ReLU and pooling are not counted)."""
    flops, c_prev = 0, in_channels
    widths = [width * 2**i for i in range(levels)]
    for i, c in enumerate(widths):
        s = size // 2**i
        flops += 2 * s * s * 9 * (c_prev * c + c * c)
        c_prev = c
    for i in range(levels - 1, 0, -1):
        c, s = widths[i], size // 2**(i - 1)
        flops += 2 * (s // 2) ** 2 * c * (c // 2) * 4  # 2x2 transposed conv, stride 2
        flops += 2 * s * s * 9 * ((c if skips else c // 2) * (c // 2) + (c // 2) ** 2)
    return flops + 2 * size * size * widths[0]


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size): one crop at a position drawn from the global torch
    RNG, the same for the whole batch (each patch is a random crop of its image already)."""
    if size >= min(x.shape[-2:]):
        return x
    top = int(torch.randint(x.shape[-2] - size + 1, (1,)))
    left = int(torch.randint(x.shape[-1] - size + 1, (1,)))
    return x[..., top:top + size, left:left + size]


class Inpainter(nn.Module):
    """Per-patch inference of a trained :class:`UNet`: (B, C, h, w) -> (B, C, h, w), each pixel
    from the pass that hid it, averaged over cell sizes. ``masks``: (K * S, 1, h, w) as
    :func:`inference_masks`, K cell sizes of S sets each. Traceable (the ONNX export)."""

    def __init__(self, net: UNet, masks: torch.Tensor, sets: int, mask_channel: bool):
        super().__init__()
        self.net, self.sets, self.mask_channel = net, sets, mask_channel
        self.register_buffer("masks", masks)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, h, w); masks: (P, 1, h, w) to use instead of the fixed ones (a whole
        image's or a tile's, :func:`ssimae.core.masks.grid_masks`)."""
        b, c, h, w = x.shape
        m = (self.masks if masks is None else masks).to(x.dtype)  # (P, 1, h, w)
        p = m.shape[0]
        hidden = (x[None] * (1 - m[:, None])).reshape(p * b, c, h, w)  # pass-major
        if self.mask_channel:
            hidden = torch.cat([hidden, m[:, None].expand(p, b, 1, h, w).reshape(p * b, 1, h, w)], 1)
        y = self.net(hidden).reshape(p, b, c, h, w)
        kept = (y * m[:, None]).reshape(p // self.sets, self.sets, b, c, h, w).sum(1)  # each pixel once per size
        return kept.mean(0)
