"""Typed, versioned settings of a run: how it was trained, and how it scores images.

A run is described by two dataclasses, stored side by side in its checkpoint and its
config.json (``{"version": 2, "train": {...}, "inference": {...}}``):

* :class:`TrainSettings`: what only training needs: the model (a name in
  :mod:`ssimae.models`) and its own hyperparameters (``params``, the model's dataclass),
  the latent size d, the patch budget, the optimizer, the seed, the data.
* :class:`InferenceSettings` (:mod:`ssimae.runs.inference_settings`, torch-free, so the
  ONNX runtime uses it directly): what scoring an image needs: preprocessing, the
  sliding-window stride, the residual map and its SSIM options, the opening, and the
  threshold with the rule that chose it. :class:`ssimae.inference.detector.Detector` takes these.

Every default lives here once, as the paper states it (Sec. 4.2), or in the module that
owns the concept (stride: :mod:`ssimae.core.window`, opening: :mod:`ssimae.core.morphology`, SSIM
window: :mod:`ssimae.core.ssim`, latent size: :mod:`ssimae.models.network`). Checkpoints of
version 1 (one flat config dict) are read by :func:`settings_from_v1`.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from ssimae.core.morphology import OPENING_DIAMETER
from ssimae.core.preprocess import Preprocess
from ssimae.core.seeds import MAX_SEED
from ssimae.core.ssim import SsimOptions
from ssimae.core.window import STRIDE, check_whole
from ssimae.errors import SsimaeError
from ssimae.models.constants import DEFAULT_LATENT_DIM, NORMS
from ssimae.runs.fields import at_most, from_dict
from ssimae.runs.options import DATA_FOLDERS
from ssimae.runs.recipes import RECIPES
from ssimae.runs.inference_settings import THRESHOLD_RULE, InferenceSettings  # noqa: F401  (re-exported)

SETTINGS_VERSION = 2
LEARNING_RATE = 2e-4  # Sec. 4.2
WEIGHT_DECAY = 1e-5  # Sec. 4.2
EPOCHS = 200  # Sec. 4.2
BATCH_SIZE = 32  # not stated in the paper
VAL_FRACTION = 0.1  # share of the defect-free training images held back for the threshold
SCHEDULES = ("constant", "cosine")  # learning-rate schedules (the paper: constant)
PATCHES_PER_EPOCH = 10_000  # Sec. 4.2: "trained on 10 000 defect-free patches of size 128x128"
# Ceilings (docs/commands.md, "Limits"): far above any sensible run, low enough that a typo
# stops with one line before any allocation instead of a MemoryError after the training.
MAX_LATENT_DIM = 8192
MAX_EPOCHS = 1_000_000
MAX_PATCHES_PER_EPOCH = 100_000_000
MAX_BATCH_SIZE = 65_536
MAX_WORKERS = 256
AUGMENTATIONS = ("none", "flips", "dihedral")  # random patch augmentations (ssimae.training.patches; the paper: none)


@dataclass
class TrainSettings:
    """Everything that defines how a model is trained (Sec. 4.2 defaults).

    ``params`` is the model's own hyperparameter dataclass (``get_model(model).Params``);
    None means its defaults. ``data`` records how the dataset was read (root, format, ...).
    """

    model: str = "ssim"
    latent_dim: int = DEFAULT_LATENT_DIM
    epochs: int = EPOCHS
    patches_per_epoch: int = PATCHES_PER_EPOCH
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    weight_decay: float = WEIGHT_DECAY
    seed: int = 0
    max_minutes: float | None = None
    val_fraction: float = VAL_FRACTION
    num_workers: int = 0
    device: str = "auto"
    params: Any = None
    data: dict = field(default_factory=dict)
    # Beyond the paper (ssimae.runs.recipes; the defaults are the paper's training):
    recipe: str = "paper"
    schedule: str = "constant"  # or "cosine": linear warm-up, then cosine decay to 0 at the end
    warmup: float = 0.0  # share of all steps spent in the linear warm-up (cosine schedule)
    augment: str = "none"  # or "flips" (random h/v flips) or "dihedral" (flips and 90-degree turns)
    l2_warmup: float = 0.0  # share of all steps trained with the l2 loss before the model's own
    norm: str = "none"  # or "batch": BatchNorm after each hidden convolution (not in Table 1)
    channels_last: bool = False  # NHWC memory format (speed only)
    budget_minutes: float | None = None  # a time budget, converted once into ``epochs``
    measured_patches_per_s: float | None = None  # the throughput that conversion measured
    processes: int = 1  # processes that trained it together (torchrun); batch_size is their joint batch
    micro_batches: int = 1  # each step's batch cut into this many parts whose gradients are summed (less memory)

    def __post_init__(self) -> None:
        from ssimae.models import get_model

        spec = get_model(self.model)
        if self.params is None:
            self.params = spec.Params()
        elif isinstance(self.params, dict):
            self.params = from_dict(spec.Params, self.params, f"{self.model} model settings")
        elif not isinstance(self.params, spec.Params):
            raise SsimaeError(f"{self.model} model settings must be a {spec.Params.__name__}, "
                              f"got {type(self.params).__name__}")
        self.validate()

    def validate(self) -> None:
        """Raise SsimaeError naming the option of the first value out of its range."""
        for name, ceiling in (("epochs", MAX_EPOCHS), ("patches_per_epoch", MAX_PATCHES_PER_EPOCH),
                              ("batch_size", MAX_BATCH_SIZE), ("latent_dim", MAX_LATENT_DIM)):
            if getattr(self, name) < 1:
                raise SsimaeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
            at_most(f"--{name.replace('_', '-')}", getattr(self, name), ceiling)
        if not 0 <= self.val_fraction < 1:
            raise SsimaeError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        choices = {"schedule": SCHEDULES, "augment": AUGMENTATIONS, "norm": NORMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SsimaeError(f"--{name}: unknown value {getattr(self, name)!r}; choose from {', '.join(allowed)}")
        for name in ("warmup", "l2_warmup"):
            if not 0 <= getattr(self, name) < 1:
                raise SsimaeError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.budget_minutes is not None and not (math.isfinite(self.budget_minutes) and self.budget_minutes > 0):
            raise SsimaeError(f"--budget-minutes must be a positive number, got {self.budget_minutes}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes >= 0):
            raise SsimaeError(f"--max-minutes must be a number >= 0, got {self.max_minutes}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SsimaeError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise SsimaeError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        if self.seed < 0:
            raise SsimaeError(f"--seed must be 0 or more, got {self.seed}")
        if not 1 <= self.micro_batches <= self.batch_size:
            raise SsimaeError(f"--micro-batches must be in [1, --batch-size {self.batch_size}], got {self.micro_batches}")
        if self.num_workers < 0:
            raise SsimaeError(f"--workers must be 0 or more, got {self.num_workers}")
        at_most("--seed", self.seed, MAX_SEED)
        at_most("--workers", self.num_workers, MAX_WORKERS)
        if self.recipe not in RECIPES:
            raise SsimaeError(f"--recipe: unknown recipe {self.recipe!r}; choose from {', '.join(RECIPES)}")
        check_data(self.data)


def check_data(data: dict) -> None:
    """SsimaeError unless ``data`` (how a run's dataset was read: ``TrainSettings.data``) holds
    only known keys with values of their types: root and the folders text or null, format and
    mask_suffix text, test_fraction a number in (0, 1), skip_bad true/false, seed an int."""
    kinds = {"root": str, "seed": int, "format": str, "mask_suffix": str, "test_fraction": float, "skip_bad": bool,
             **{name: str for name in DATA_FOLDERS}}
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise SsimaeError(f"train.data: unknown setting(s) {', '.join(unknown)} (known: {', '.join(kinds)})")
    for key, value in data.items():
        kind = kinds[key]
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
                               else isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
        if not ok:
            raise SsimaeError(f"train.data.{key}: expected {kind.__name__}, got {value!r}")
    if data.get("test_fraction") is not None and not 0 < data["test_fraction"] < 1:
        raise SsimaeError(f"train.data.test_fraction must be in (0, 1), got {data['test_fraction']}")
    if data.get("seed") is not None:
        at_most("train.data.seed", data["seed"], MAX_SEED)


@dataclass
class RunSettings:
    """A run's two halves; what ``train`` takes and the checkpoint stores."""

    train: TrainSettings = field(default_factory=TrainSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def __post_init__(self) -> None:
        """The inference settings checked against the model (before any training)."""
        from ssimae.models import get_model

        model = get_model(self.train.model)
        model.with_test_params(self.train.params, self.inference.model_params)
        check_whole(self.inference.tiling, model.geometry(self.train.params), model.title)

    def to_dict(self) -> dict:
        """JSON-ready ``{"version": 2, "train": {...}, "inference": {...}}``."""
        return {"version": SETTINGS_VERSION, "train": asdict(self.train), "inference": asdict(self.inference)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "settings") -> "RunSettings":
        """Inverse of :meth:`to_dict`; wrong keys, types or version raise SsimaeError."""
        if not isinstance(d, dict) or d.get("version") != SETTINGS_VERSION:
            got = d.get("version") if isinstance(d, dict) else type(d).__name__
            raise SsimaeError(f"{where}: settings version {got!r} is not supported (expected {SETTINGS_VERSION})")
        unknown = set(d) - {"version", "train", "inference"}
        if unknown:
            raise SsimaeError(f"{where}: unknown keys {', '.join(sorted(unknown))}{_section_hint(unknown)}")
        return cls(from_dict(TrainSettings, d.get("train", {}), f"{where}: train"),
                   from_dict(InferenceSettings, d.get("inference", {}), f"{where}: inference"))


def _section_hint(keys) -> str:
    """'' or where top-level ``keys`` of a config belong: '; epochs, model belong under train:'."""
    parts = []
    for section, cls in (("train", TrainSettings), ("inference", InferenceSettings)):
        names = sorted(set(keys) & {f.name for f in dataclasses.fields(cls)})
        if names:
            parts.append(f"{', '.join(names)} belong under {section}:")
    return "; " + "; ".join(parts) if parts else ""


def settings_from_v1(config: dict, threshold: float | None) -> RunSettings:
    """Settings of a version-1 checkpoint (one flat dict, the threshold beside it)."""
    from ssimae.models import get_model

    c = dict(config)
    ssim = SsimOptions(**c.get("ssim", {}))
    spec = get_model(c.get("model", "ssim"))
    param_names = {f.name for f in dataclasses.fields(spec.Params)}
    # v1 prefixed the VAE's settings with "vae_" and the fm weight with "fm_".
    v1_names = {"samples": "vae_samples", "obs_var": "vae_obs_var", "kl_weight": "kl_weight",
                "weight": "fm_weight", "alexnet_weights": "alexnet_weights"}
    params = {n: c[v1_names[n]] for n in param_names if v1_names.get(n) in c}
    if "ssim" in param_names:
        params["ssim"] = ssim
    train_keys = {f.name for f in dataclasses.fields(TrainSettings)} - {"params"}
    train = TrainSettings(**{k: c[k] for k in train_keys if k in c}, params=spec.Params(**params))
    inference = InferenceSettings(
        preprocess=from_dict(Preprocess, c.get("preprocess") or {}, "preprocess"), stride=c.get("stride", STRIDE),
        residual=spec.default_residual, ssim=ssim, opening_diameter=c.get("opening_diameter", OPENING_DIAMETER),
        threshold=threshold, threshold_rule="max-region", min_defect_area=c.get("min_defect_area", 0),
        batch_size=c.get("infer_batch_size", 64), seed=c.get("seed", 0))
    return RunSettings(train, inference)
