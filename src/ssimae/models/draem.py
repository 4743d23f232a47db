"""A reconstruction network with a segmentation head trained on synthetic anomalies (beyond the paper).

Zavrtanik, Kristan and Skočaj, "DRAEM - A discriminatively trained reconstruction embedding
for surface anomaly detection", ICCV 2021. Two networks are trained together on
defect-free patches into which :func:`ssimae.data.synthetic.add_anomaly` pastes Perlin-shaped
anomalies: a reconstructive network (an encoder-decoder without skip paths) learns to
restore the clean patch (loss l2 + SSIM), and a discriminative U-Net that sees the input
and its reconstruction side by side learns to segment the pasted anomaly (focal loss).
Its output, the per-pixel anomaly probability, is the residual map (``draem``).

The anomaly textures come from images that ship with scikit-image and procedural noise
(DRAEM uses the Describable Textures Dataset, which cannot be downloaded here). The
networks and the losses: :mod:`ssimae.models.draem_net`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ssimae.models import Model, check_number, register_model
from ssimae.models.inpaint import TRAIN_CROP_FLAG, check_train_crop, unet_geometry

WIDTH = 16
FOCAL_GAMMA = 2.0  # DRAEM's focal loss


@dataclass(frozen=True)
class ReconParams:
    """Hyperparameters of the reconstruction network trained on synthetic anomalies."""

    width: int = field(default=WIDTH, metadata={"flag": "--draem-width",
                                                "help": f"draem, draem-recon: base network width (default {WIDTH})"})
    p_anomaly: float = 0.5  # share of training patches that get a synthetic anomaly
    beta_max: float = 0.8  # DRAEM: opacity of the pasted texture drawn from [0, beta_max]
    train_crop: int = field(default=64, metadata=TRAIN_CROP_FLAG)
    anomalies: str = field(default="perlin", metadata={
        "flag": "--anomalies", "help": "draem, draem-recon: synthetic anomalies to train on: perlin (DRAEM's foreign "
                                       "textures, the default), cutpaste (pieces of other good patches, NSA), removal "
                                       "(texture blurred or flattened away), mixed (each patch one of the three), "
                                       "perlin-removal (each patch perlin or removal)"})

    def __post_init__(self):
        from ssimae.data.synthetic import ANOMALY_KINDS
        from ssimae.errors import SsimaeError

        if self.anomalies not in ANOMALY_KINDS:
            raise SsimaeError(f"--anomalies: unknown value {self.anomalies!r}; choose from {', '.join(ANOMALY_KINDS)}")

        if not 1 <= self.width <= 256:
            raise SsimaeError(f"--draem-width must be between 1 and 256, got {self.width}")
        if not (0 < self.p_anomaly <= 1 and 0 <= self.beta_max < 1):
            raise SsimaeError("draem: p_anomaly must be in (0, 1] and beta_max in [0, 1)")
        check_train_crop(self.train_crop)


@dataclass(frozen=True)
class DraemParams(ReconParams):
    seg_weight: float = 1.0  # weight of the segmentation head's focal loss (0: train the reconstruction only)

    def __post_init__(self):
        super().__post_init__()
        check_number("draem seg_weight", self.seg_weight)


@register_model
class DraemModel(Model):
    name = "draem"
    title = "DRAEM"
    recipe = "draem"
    Params = DraemParams
    default_residual = "draem"
    compare_residuals = ("draem", "msgms", "ssim")
    outputs = ("recon", "anomaly")

    def build(self, latent_dim, params: DraemParams, norm="none", channels=1):
        from ssimae.models.draem_net import Draem

        return Draem(channels, params.width)

    def loss(self, net, params: DraemParams, device):
        from ssimae.models.draem_net import recon_loss

        return recon_loss(net.recon, params, net.seg if params.seg_weight else None)

    def geometry(self, params: DraemParams):
        return unet_geometry(networks=2)  # the segmentation net reads the reconstruction


@register_model
class DraemRecon(Model):
    """DRAEM's reconstruction network alone (no segmentation head), scored with MSGMS: the
    best model measured on Magnetic Tile (docs/results/models/)."""

    name = "draem-recon"
    title = "DRAEM-recon"
    recipe = "draem-recon"
    Params = ReconParams
    default_residual = "msgms"
    compare_residuals = ("msgms", "ssim", "l2")

    def build(self, latent_dim, params: ReconParams, norm="none", channels=1):
        from ssimae.models.unet import UNet

        return UNet(channels, channels, params.width, skips=False)

    def loss(self, net, params: ReconParams, device):
        from ssimae.models.draem_net import recon_loss

        return recon_loss(net, params)

    def geometry(self, params: ReconParams):
        return unet_geometry()
