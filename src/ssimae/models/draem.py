"""A reconstruction network with a segmentation head trained on synthetic anomalies (beyond the paper).

Zavrtanik, Kristan and Skočaj, "DRAEM - A discriminatively trained reconstruction embedding
for surface anomaly detection", ICCV 2021. Two networks are trained together on
defect-free patches into which :func:`ssimae.data.synthetic.add_anomaly` pastes Perlin-shaped
anomalies: a reconstructive network (an encoder-decoder without skip paths) learns to
restore the clean patch (loss l2 + SSIM), and a discriminative U-Net that sees the input
and its reconstruction side by side learns to segment the pasted anomaly (focal loss).
Its output, the per-pixel anomaly probability, is the residual map (``draem``).

The anomaly textures come from images that ship with scikit-image and procedural noise
(DRAEM uses the Describable Textures Dataset, which cannot be downloaded here).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ssimae.models import Model, check_number, register_model
from ssimae.models.inpaint import TRAIN_CROP_FLAG, UNet, check_train_crop, random_crop, unet_geometry

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


class Draem(nn.Module):
    """recon: (B, C, h, w) -> (B, C, h, w) in [0, 1]; seg: (B, 2C, h, w) -> (B, 1, h, w) logits."""

    def __init__(self, channels: int = 1, width: int = WIDTH):
        super().__init__()
        self.recon = UNet(channels, channels, width, skips=False)
        self.seg = UNet(2 * channels, 1, width, sigmoid=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 2C, h, w): the reconstruction, then the anomaly probability
        repeated over the C channels (the model's ``outputs``: recon, anomaly)."""
        r = self.recon(x)
        p = torch.sigmoid(self.seg(torch.cat([x, r], 1)))
        return torch.cat([r, p.expand_as(r)], 1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean binary focal loss -(1 - p_t)^gamma log p_t (Lin et al., ICCV 2017) of logits and
    a {0, 1} target of the same shape."""
    logp = torch.nn.functional.logsigmoid(logits)
    lognp = torch.nn.functional.logsigmoid(-logits)
    logpt = target * logp + (1 - target) * lognp
    return (-(1 - logpt.exp()) ** gamma * logpt).mean()


def synthetic_batch(x: torch.Tensor, params: ReconParams, sources) -> tuple[torch.Tensor, torch.Tensor]:
    """(anomalous batch (B, C, h, w), mask (B, 1, h, w) in {0, 1}) from a clean batch, one
    :func:`ssimae.data.synthetic.make_anomaly` of kind ``params.anomalies`` per patch (the
    donor of a cut-and-paste: the next patch of the batch), drawn from a generator seeded
    from the global torch RNG (so a run is reproducible). "perlin" draws each channel on its
    own (the mask: their union), as DRAEM's runs always did; the other kinds draw once per
    patch and apply the same region to every channel."""
    from ssimae.data.synthetic import make_anomaly

    rng = np.random.default_rng(int(torch.randint(2**31, (1,))))
    clean = x.detach().float().cpu().numpy()
    donors = np.roll(clean, 1, axis=0)
    kind = params.anomalies
    pairs = []
    for img, donor in zip(clean, donors):
        if kind == "perlin":
            pairs.append([make_anomaly(ch, ch, rng, sources, kind, params.p_anomaly, params.beta_max) for ch in img])
        else:
            seed = int(rng.integers(2**63))
            pairs.append([make_anomaly(ch, dch, np.random.default_rng(seed), sources, kind, params.p_anomaly,
                                       params.beta_max) for ch, dch in zip(img, donor)])
    xa = torch.from_numpy(np.stack([[p[0] for p in img] for img in pairs])).to(x)
    mask = torch.from_numpy(np.stack([np.any([p[1] for p in img], 0) for img in pairs])[:, None]).to(x)
    return xa, mask


def _recon_loss(net_recon, params: ReconParams, seg=None):
    """l2 + SSIM of the restored clean patch (+ the focal loss of ``seg`` on the synthetic mask)."""
    from ssimae.core.ssim_torch import ssim_loss
    from ssimae.data.synthetic import source_textures

    sources = source_textures()

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        x = random_crop(x, params.train_crop)
        xa, mask = synthetic_batch(x, params, sources)
        r = net_recon(xa)
        loss = torch.mean((r - x) ** 2) * x.shape[1] + ssim_loss(r, x)
        if seg is not None:
            loss = loss + params.seg_weight * focal_loss(seg(torch.cat([xa, r], 1)), mask)
        return loss

    return loss_fn


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
        return Draem(channels, params.width)

    def loss(self, net: Draem, params: DraemParams, device):
        return _recon_loss(net.recon, params, net.seg if params.seg_weight else None)

    def geometry(self, params: DraemParams):
        return unet_geometry(networks=2)  # the segmentation net reads the reconstruction


@register_model
class DraemRecon(Model):
    """DRAEM's reconstruction network alone (no segmentation head), scored with MSGMS: the
    best model measured on Magnetic Tile (docs/results/models/)."""

    name = "draem-recon"
    title = "DRAEM-recon"
    recipe = "draem"
    Params = ReconParams
    default_residual = "msgms"
    compare_residuals = ("msgms", "ssim", "l2")

    def build(self, latent_dim, params: ReconParams, norm="none", channels=1):
        return UNet(channels, channels, params.width, skips=False)

    def loss(self, net: UNet, params: ReconParams, device):
        return _recon_loss(net, params)

    def geometry(self, params: ReconParams):
        return unet_geometry()
