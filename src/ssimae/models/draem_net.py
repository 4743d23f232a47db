"""DRAEM's networks and losses (:mod:`ssimae.models.draem` is the model: its settings and
registry entries): the reconstructive and discriminative pair, the focal loss, the batches
with synthetic anomalies."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssimae.models.draem import FOCAL_GAMMA, WIDTH, ReconParams
from ssimae.models.unet import UNet, random_crop


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


def recon_loss(net_recon, params: ReconParams, seg=None):
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
