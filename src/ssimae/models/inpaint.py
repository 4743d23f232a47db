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
convolution up, skip concatenation, sigmoid output): :class:`ssimae.models.unet.UNet`, with the
masks and the composed reconstruction (:class:`ssimae.models.unet.Inpainter`); see
:func:`ssimae.models.unet.unet_flops` for its cost.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def check_train_crop(size: int) -> None:
    """SsimaeError unless ``size`` is a training crop the U-Net takes."""
    from ssimae.errors import SsimaeError

    if not 16 <= size <= 128 or size % 2 ** (LEVELS - 1):
        raise SsimaeError(f"--train-crop must be a multiple of {2 ** (LEVELS - 1)} in [16, 128], got {size}")


def unet_reach(levels: int = LEVELS) -> int:
    """The largest distance (px, along an axis) between an output pixel of
    :class:`ssimae.models.unet.UNet` and an input pixel it depends on: 1 px at its level's
    scale for each 3x3 convolution (two per level on the way down and two on the way up),
    plus up to the total stride minus one for where a pixel lies in the 2x2 pooling cells (a
    2x2 transposed convolution of stride 2 reads one input pixel); 51 for 4 levels. The skip
    paths see less. Arithmetic only (no torch): the settings check ``--tiling whole`` with it."""
    convolutions = 2 * sum(2**i for i in range(levels)) + 2 * sum(2**i for i in range(levels - 1))
    return convolutions + 2 ** (levels - 1) - 1


def unet_geometry(networks: int = 1) -> Geometry:
    """The :class:`ssimae.core.window.Geometry` of ``networks`` U-Nets applied one after the
    other (DRAEM's segmentation net reads its reconstruction net's output)."""
    return Geometry(2 ** (LEVELS - 1), networks * unet_reach())



# --- the model --------------------------------------------------------------------------------

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
        from ssimae.models.unet import UNet

        return UNet(channels + int(params.mask_channel), channels, params.width)

    def loss(self, net, params: InpaintParams, device):
        import torch

        from ssimae.core.msgms_torch import msgms_map
        from ssimae.core.ssim_torch import ssim_loss
        from ssimae.models.unet import cell_assignment, random_crop

        sizes = params.cell_sizes

        def inpaint_loss(x):
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
                loss = loss + params.ssim_weight * ssim_loss(y, x)
            return loss

        return inpaint_loss

    def patch_fn(self, net, params: InpaintParams, seed: int):
        """Batch (B, C, 128, 128) -> (B, C, 128, 128): :class:`ssimae.models.unet.Inpainter` with the fixed masks of
        ``params.mask_seed`` (deterministic: ``seed`` is not needed)."""
        return self.export_module(net, params)[0]

    def export_module(self, net, params: InpaintParams):
        from ssimae.core.window import PATCH_SIZE
        from ssimae.models.unet import Inpainter, inference_masks

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
        from ssimae.models.unet import inference_assignments

        window = inference_assignments(PATCH_SIZE, params.cell_sizes, params.mask_sets, params.mask_seed)
        return {"cell_sizes": list(params.cell_sizes), "sets": params.mask_sets, "seed": params.mask_seed,
                "window": grids_to_text([a.numpy() for a in window], params.cell_sizes)}

    def image_fn(self, net, params: InpaintParams, seed: int):
        """fn(batch, masks): :class:`ssimae.models.unet.Inpainter` with the image's (or tile's) grid masks."""
        import torch

        module = self.export_module(net, params)[0]
        return lambda batch, masks: module(batch, torch.as_tensor(masks, device=batch.device))
