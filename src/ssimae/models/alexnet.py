"""The feature-matching autoencoder's regulariser (Bergmann et al., VISAPP 2019, Sec. 2, 4.2).

"The feature matching autoencoder is regularized with the first three convolutional layers
of an AlexNet pretrained on ImageNet and a weight factor of lambda = 1."

The loss is ``mean((x - x_hat)^2) + lambda * mean((phi(x) - phi(x_hat))^2)`` where phi is
the first three convolutional layers of torchvision's AlexNet (with the ReLUs and max-pools
between them), frozen. The layers are defined here; torchvision is not needed. The weights
are the standard torchvision checkpoint ``alexnet-owt-7be5be79.pth``: found in torch hub's
checkpoint folder, downloaded there, or given explicitly (``--alexnet-weights``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssimae.errors import SsimaeError, one_line
from ssimae.models.constants import FM_WEIGHT  # noqa: F401  (the paper's lambda; defined torch-free there)

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_HASH_PREFIX = "7be5be79"  # torchvision names checkpoints <name>-<sha256 prefix>.pth

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The six tensors taken from the checkpoint: torchvision's AlexNet `features.{0,3,6}`.
EXPECTED_KEYS: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
}


class AlexNetFeatures(nn.Module):
    """phi: the first three conv layers of AlexNet, frozen and always in eval mode.

    Input: (B, 1, H, W) gray in [0, 1] (or (B, 3, H, W) RGB in [0, 1]); gray is repeated to
    three channels, then normalised with the ImageNet mean/std.
    Output: the conv3 activation after its ReLU, (B, 384, h, w), e.g. h = w = 7 for
    H = W = 128 (conv1 stride 4 -> 31, pool -> 15, conv2 -> 15, pool -> 7, conv3 -> 7).
    Parameters do not require gradients, but gradients flow to the input.
    """

    def __init__(self):
        super().__init__()
        # Same indices as torchvision's AlexNet.features, so the checkpoint keys match.
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # features.0
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # features.3
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # features.6
            nn.ReLU(inplace=False),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "AlexNetFeatures":
        """Stays in eval mode whatever ``mode`` is (the extractor is frozen)."""
        return super().train(False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, H, W) in [0, 1] -> (B, 3, H, W) ImageNet-normalised."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> conv3 activation after ReLU, (B, 384, h, w)."""
        return self.features(self.normalise(x))


def hub_checkpoint_path() -> Path:
    """Where torch hub keeps the checkpoint: ``torch.hub.get_dir()/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME


def _missing_weights_problem(reason: str) -> str:
    """The one-line help text for when the AlexNet weights are not available."""
    return (
        f"the feature-matching model needs the ImageNet-pretrained AlexNet weights "
        f"{ALEXNET_FILENAME} ({reason}); download {ALEXNET_URL} and put it at this path "
        f"(torch hub's checkpoints folder), or pass --alexnet-weights PATH"
    )


def locate_alexnet_weights(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Path of the AlexNet checkpoint file.

    1. ``path`` given: it must be an existing file.
    2. else ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` if it exists;
    3. else, if ``download``, fetch ALEXNET_URL there (checking the sha256 prefix).
    Raises SsimaeError with instructions when the file is missing or cannot be downloaded.
    """
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise SsimaeError("AlexNet weights file does not exist (--alexnet-weights)", p)
        if not p.is_file():
            raise SsimaeError("AlexNet weights path is not a file (--alexnet-weights)", p)
        return p
    dst = hub_checkpoint_path()
    if dst.is_file():
        return dst
    if not download:
        raise SsimaeError(_missing_weights_problem("not found, downloading disabled"), dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(ALEXNET_URL, str(dst), hash_prefix=ALEXNET_HASH_PREFIX)
    except Exception as exc:  # offline, proxy, disk, hash mismatch: all end the same way
        raise SsimaeError(_missing_weights_problem(f"download failed: {type(exc).__name__}: {one_line(exc)}"), dst) from exc
    if not dst.is_file():
        raise SsimaeError(_missing_weights_problem("download produced no file"), dst)
    return dst


def _read_state_dict(path: Path) -> dict:
    """torch.load(weights_only=True) of ``path``; any failure -> SsimaeError."""
    if not path.is_file():
        raise SsimaeError("AlexNet weights file does not exist", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own messages are long and (for weights_only) suggest unsafe loading: keep it short.
        raise SsimaeError("cannot read AlexNet weights: not a complete PyTorch checkpoint "
                          f"(truncated or corrupt file; {type(exc).__name__})", path) from exc
    if not isinstance(state, dict):
        raise SsimaeError(f"AlexNet checkpoint holds a {type(state).__name__}, expected a state dict", path)
    return state


def check_alexnet_state(state: dict, path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The six EXPECTED_KEYS tensors from ``state`` as float32; SsimaeError if missing/misshapen."""
    missing = [k for k in EXPECTED_KEYS if k not in state]
    if missing:
        raise SsimaeError(f"AlexNet checkpoint lacks {', '.join(missing)}", path)
    out = {}
    for key, shape in EXPECTED_KEYS.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise SsimaeError(f"{key} is a {type(value).__name__}, not a tensor", path)
        if tuple(value.shape) != shape:
            raise SsimaeError(f"{key} has shape {tuple(value.shape)} but AlexNet needs {shape}", path)
        if not value.is_floating_point():
            raise SsimaeError(f"{key} has dtype {value.dtype}, expected floating point", path)
        out[key] = value.float()
    return out


def load_alexnet_features(path: str | os.PathLike) -> AlexNetFeatures:
    """AlexNetFeatures with the conv weights of the checkpoint at ``path`` (extra keys ignored)."""
    path = Path(path)
    tensors = check_alexnet_state(_read_state_dict(path), path)
    phi = AlexNetFeatures()
    phi.load_state_dict(tensors, strict=True)
    return phi


def feature_matching_loss(x: torch.Tensor, x_hat: torch.Tensor,
                          phi: Callable[[torch.Tensor], torch.Tensor],
                          weight: float = FM_WEIGHT) -> torch.Tensor:
    """Scalar ``mean((x - x_hat)^2) + weight * mean((phi(x) - phi(x_hat))^2)``.

    x, x_hat: (B, C, H, W) in [0, 1], same shape, C = 1 (gray) or 3 (RGB). Both terms are
    means over their elements (pixels, with a color pixel's squared error summed over its
    channels, resp. feature-map entries), so lambda = 1 weighs per-element averages.
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat differ in shape: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    pixel = F.mse_loss(x_hat, x) * x.shape[1]
    feature = F.mse_loss(phi(x_hat), phi(x))
    return pixel + weight * feature
