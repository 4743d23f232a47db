"""Reconstruction by inpainting (beyond the paper): a U-Net that never sees the pixels it restores.

Zavrtanik, Kristan and Skočaj, "Reconstruction by inpainting for visual anomaly detection",
Pattern Recognition 112 (2021) ("RIAD"). A patch is cut into a grid of square cells of side
k; the cells are split at random into ``mask_sets`` disjoint sets; set s is hidden (set to 0)
and the network restores the whole patch from what is left. At test time every set is hidden
in turn and each pixel is taken from the pass that hid it, so every pixel is reconstructed
from its surroundings only, and a defect is not copied through the skip paths; the
reconstructions of the cell sizes ``cell_sizes`` are averaged.

Training: for every patch one cell size and one hidden set are drawn; loss = l2 +
``ssim_weight`` x (1 - mean SSIM) + ``msgms_weight`` x mean(1 - MSGMS) over the whole patch (RIAD's loss), on random 64 x 64 crops of the 128 x 128 patches (``train_crop``). Scored
with the ``ssim`` residual (RIAD uses MSGMS; SSIM measured better on the demo), smoothed by
the run's ``smooth``.

The network is small for a CPU: a U-Net of 4 levels of widths ``width`` x (1, 2, 4, 8)
(two 3x3 convolutions with BatchNorm and ReLU per level, 2x2 max-pool down, 2x2 transposed
convolution up, skip concatenation, sigmoid output); see :func:`unet_flops` for its cost.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssimae.core.msgms_torch import msgms_map
from ssimae.core.seeds import MAX_SEED
from ssimae.core.window import Geometry
from ssimae.models import Model, check_number, register_model

CELL_SIZES = (2, 8)  # RIAD uses 2, 4, 8, 16; 2 and 8 measured better and half the test passes (docs/results/models)
MASK_SETS = 3  # RIAD: n = 3 disjoint sets
WIDTH = 16  # U-Net base width (levels 16-32-64-128)
GRADIENT_EPS = 1e-12  # sqrt(g^2 + eps) in the loss's gradient magnitudes (differentiable at g = 0)
LEVELS = 4


TRAIN_CROP_FLAG = {"flag": "--train-crop", "help": "inpaint, draem: train on random crops of this side cut from "
                   "each 128x128 patch (fully convolutional networks; 64, the default, costs 4x less than 128)"}


def _cell_sizes(value) -> tuple[int, ...]:
    """'2,4,8,16' or a sequence of ints -> tuple of ints; SsimaeError naming the valid form
    otherwise (raised through argparse as it is: one line, no usage)."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        from ssimae.errors import SsimaeError

        raise SsimaeError(f"--cell-sizes must be whole numbers separated by commas, e.g. 2,8; got {value!r}") from None


@dataclass(frozen=True)
class InpaintParams:
    cell_sizes: tuple[int, ...] = field(default=CELL_SIZES, metadata={
        "flag": "--cell-sizes", "parse": _cell_sizes,
        "help": f"inpaint: grid cell sides in px, comma-separated (default {','.join(map(str, CELL_SIZES))})"})
    mask_sets: int = field(default=MASK_SETS, metadata={
        "flag": "--mask-sets", "help": f"inpaint: disjoint cell sets, one hidden per pass (default {MASK_SETS})"})
    width: int = field(default=WIDTH, metadata={
        "flag": "--unet-width", "help": f"inpaint: U-Net base width (default {WIDTH})"})
    msgms_weight: float = 1.0
    # RIAD's loss is l2 + SSIM + MSGMS. The SSIM term is needed: MSGMS compares gradient
    # magnitudes only, so an inverted image scores perfectly, and without SSIM one of two
    # seeds settled on an inverted reconstruction (correlation -0.997 with its input).
    ssim_weight: float = 1.0
    mask_channel: bool = False  # give the network the hidden-cell mask as a second input channel
    mask_seed: int = 0  # seeds the fixed masks of inference (the same in torch and in an export)
    train_crop: int = field(default=64, metadata=TRAIN_CROP_FLAG)

    def __post_init__(self):
        from ssimae.errors import SsimaeError

        sizes = _cell_sizes(self.cell_sizes)
        object.__setattr__(self, "cell_sizes", sizes)
        if not sizes or any(not 1 <= k <= 64 for k in sizes):
            raise SsimaeError(f"--cell-sizes must be between 1 and 64 px, got {self.cell_sizes}")
        if not 2 <= self.mask_sets <= 16:
            raise SsimaeError(f"--mask-sets must be between 2 and 16, got {self.mask_sets}")
        if not 1 <= self.width <= 256:
            raise SsimaeError(f"--unet-width must be between 1 and 256, got {self.width}")
        check_train_crop(self.train_crop)
        check_number("inpaint msgms_weight", self.msgms_weight)
        check_number("inpaint ssim_weight", self.ssim_weight)
        check_number("inpaint mask_seed", self.mask_seed, 0, MAX_SEED)


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


def unet_reach(levels: int = LEVELS) -> int:
    """The largest distance (px, along an axis) between an output pixel of :class:`UNet` and
    an input pixel it depends on: 1 px at its level's scale for each 3x3 convolution (two per
    level on the way down and two on the way up), plus up to the total stride minus one for
    where a pixel lies in the 2x2 pooling cells (a 2x2 transposed convolution of stride 2
    reads one input pixel); 51 for 4 levels. The skip paths see less."""
    convolutions = 2 * sum(2**i for i in range(levels)) + 2 * sum(2**i for i in range(levels - 1))
    return convolutions + 2 ** (levels - 1) - 1


def unet_geometry(networks: int = 1) -> Geometry:
    """The :class:`ssimae.core.window.Geometry` of ``networks`` U-Nets applied one after the
    other (DRAEM's segmentation net reads its reconstruction net's output)."""
    return Geometry(2 ** (LEVELS - 1), networks * unet_reach())


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size): one crop at a position drawn from the global torch
    RNG, the same for the whole batch (each patch is a random crop of its image already)."""
    if size >= min(x.shape[-2:]):
        return x
    top = int(torch.randint(x.shape[-2] - size + 1, (1,)))
    left = int(torch.randint(x.shape[-1] - size + 1, (1,)))
    return x[..., top:top + size, left:left + size]


def check_train_crop(size: int) -> None:
    """SsimaeError unless ``size`` is a training crop the U-Net takes."""
    from ssimae.errors import SsimaeError

    if not 16 <= size <= 128 or size % 2 ** (LEVELS - 1):
        raise SsimaeError(f"--train-crop must be a multiple of {2 ** (LEVELS - 1)} in [16, 128], got {size}")


# --- the model --------------------------------------------------------------------------------

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


@register_model
class InpaintAE(Model):
    name = "inpaint"
    title = "Inpainting U-Net"
    recipe = "inpaint"
    Params = InpaintParams
    default_residual = "ssim"  # measured better than RIAD's MSGMS on the demo (docs/results/models)
    compare_residuals = ("ssim", "msgms", "l2")
    test_params = ("cell_sizes", "mask_sets")  # fewer passes at test time (InferenceSettings.model_params)

    def build(self, latent_dim, params: InpaintParams, norm="none", channels=1):
        return UNet(channels + int(params.mask_channel), channels, params.width)

    def loss(self, net: UNet, params: InpaintParams, device):
        sizes = params.cell_sizes

        def inpaint_loss(x: torch.Tensor) -> torch.Tensor:
            x = random_crop(x, params.train_crop)
            b, c, h, w = x.shape
            k = torch.randint(len(sizes), (b,)).tolist()
            s = torch.randint(params.mask_sets, (b,))
            masks = torch.stack([cell_assignment(h, w, sizes[ki], params.mask_sets) for ki in k]) == s[:, None, None]
            m = masks[:, None].to(x.device, x.dtype)
            hidden = x * (1 - m)
            if params.mask_channel:
                hidden = torch.cat([hidden, m], 1)
            y = net(hidden)
            loss = torch.mean((y - x) ** 2) * c
            if params.msgms_weight:
                loss = loss + params.msgms_weight * torch.mean(1 - msgms_map(y, x, eps=GRADIENT_EPS))
            if params.ssim_weight:
                from ssimae.core.ssim_torch import ssim_loss

                loss = loss + params.ssim_weight * ssim_loss(y, x)
            return loss

        return inpaint_loss

    def patch_fn(self, net: UNet, params: InpaintParams, seed: int):
        """Batch (B, C, 128, 128) -> (B, C, 128, 128): :class:`Inpainter` with the fixed masks of
        ``params.mask_seed`` (deterministic: ``seed`` is not needed)."""
        return self.export_module(net, params)[0]

    def export_module(self, net: UNet, params: InpaintParams):
        from ssimae.core.window import PATCH_SIZE

        device = next(net.parameters()).device
        masks = inference_masks(PATCH_SIZE, params.cell_sizes, params.mask_sets, params.mask_seed).to(device)
        return Inpainter(net, masks, params.mask_sets, params.mask_channel).eval(), None

    def geometry(self, params: InpaintParams) -> Geometry:
        return unet_geometry()

    def pass_masks(self, params: InpaintParams) -> dict:
        """Grid masks over the whole image in whole-image inference; "window": the 128 x 128
        masks of the sliding window (drawn by torch) as text (:func:`ssimae.core.masks.grids_to_text`)."""
        from ssimae.core.masks import grids_to_text
        from ssimae.core.window import PATCH_SIZE

        window = inference_assignments(PATCH_SIZE, params.cell_sizes, params.mask_sets, params.mask_seed)
        return {"cell_sizes": list(params.cell_sizes), "sets": params.mask_sets, "seed": params.mask_seed,
                "window": grids_to_text([a.numpy() for a in window], params.cell_sizes)}

    def image_fn(self, net: UNet, params: InpaintParams, seed: int):
        """fn(batch, masks): :class:`Inpainter` with the image's (or tile's) grid masks."""
        module = self.export_module(net, params)[0]
        return lambda batch, masks: module(batch, torch.as_tensor(masks, device=batch.device))
