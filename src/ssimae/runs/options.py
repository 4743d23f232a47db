"""The one table of the options that set a run's settings (:data:`OPTIONS`), read by the
``--config`` overrides (:func:`ssimae.runs.config.override`), the ``--resume`` checks
(``ssimae.cli.main.check_resume_options``) and the recipes (:mod:`ssimae.runs.recipes`);
and the dataset options (:data:`DATA_OPTIONS`). A new option is one row here (and its flag
in the parser)."""
from __future__ import annotations

from typing import NamedTuple


class Option(NamedTuple):
    """What one command-line option (by its argparse dest) does to the settings.

    sets: the settings it sets ("train.x" / "inference.x", or "inference.x.y" for a field y of
    the frozen dataclass inference.x); resume: the setting ``--resume`` compares it with (None:
    it may change on resume, or it is checked by hand); recipe: a recipe may set it."""

    sets: tuple[str, ...]
    resume: str | None = None
    recipe: bool = False


def _same(path: str, recipe: bool = False) -> Option:
    """An option that sets one setting and may not change on resume."""
    return Option((path,), path, recipe)


_PRE = ("inference.preprocess.size", "inference.preprocess.scale")
OPTIONS: dict[str, Option] = {
    "model": Option((), "train.model"),  # sets train.model and .params (ssimae.runs.config.override)
    "preset": Option(("train.latent_dim", *_PRE)),
    "recipe": Option(("train.recipe", "train.latent_dim", "train.batch_size", "train.channels_last", "train.lr",
                      "train.weight_decay", "train.schedule", "train.warmup", "train.augment", "train.l2_warmup",
                      "train.norm", "inference.smooth", "inference.stride", "inference.image_score"), "train.recipe"),
    "epochs": Option(("train.epochs",)),
    "patches_per_epoch": _same("train.patches_per_epoch"),
    "batch_size": _same("train.batch_size", recipe=True),
    "lr": _same("train.lr", recipe=True),
    "weight_decay": _same("train.weight_decay", recipe=True),
    "latent_dim": _same("train.latent_dim"),
    "resize": Option(_PRE, "inference.preprocess.size"),
    "scale": Option(_PRE, "inference.preprocess.scale"),
    "color": _same("inference.preprocess.color"),
    "seed": Option(("train.seed", "inference.seed")),
    "max_minutes": Option(("train.max_minutes",)),
    "val_fraction": _same("train.val_fraction"),
    "workers": Option(("train.num_workers",)),
    "device": Option(("train.device",)),
    "budget_minutes": Option(("train.budget_minutes", "train.measured_patches_per_s"), "train.budget_minutes"),
    "schedule": _same("train.schedule", recipe=True),
    "warmup": _same("train.warmup", recipe=True),
    "augment": _same("train.augment", recipe=True),
    "l2_warmup": _same("train.l2_warmup", recipe=True),
    "norm": _same("train.norm", recipe=True),
    "channels_last": Option(("train.channels_last",), None, True),
    "micro_batches": Option(("train.micro_batches",)),
    "residual": _same("inference.residual"),
    "min_defect_area": _same("inference.min_defect_area"),
    "threshold_rule": Option((), "inference.threshold_rule"),
    "target_fpr": Option((), "inference.target_fpr"),
    "quantile": Option((), "inference.quantile"),
    "stride": _same("inference.stride", recipe=True),
    "opening_diameter": _same("inference.opening_diameter"),
    "ssim_window": Option(("inference.ssim",), "inference.ssim.window_size"),
    "ssim_uniform": Option(("inference.ssim",)),
    "smooth": _same("inference.smooth", recipe=True),
    "image_score": Option(("inference.image_score",), None, True),
    "image_fpr": Option(("inference.image_fpr",)),
    "image_threshold_rule": Option(("inference.image_threshold_rule",)),
    "tiling": Option(("inference.tiling",), None, True),
    "tile_size": Option(("inference.tile_size",)),
}
OPTION_FIELDS = {name: o.sets for name, o in OPTIONS.items() if o.sets}  # what --config overrides
FIXED_ON_RESUME = {name: o.resume for name, o in OPTIONS.items() if o.resume}  # what --resume refuses to change
RECIPE_OPTIONS = tuple(name for name, o in OPTIONS.items() if o.recipe)  # what a recipe may set
# recipe keys that are inference settings; the rest are training settings
INFERENCE_OPTIONS = tuple(name for name in RECIPE_OPTIONS if OPTIONS[name].sets[0].startswith("inference."))

# dataset options (argparse dest -> is a folder, stored absolute so a run is used from anywhere)
DATA_OPTIONS = {"format": False, "train_dir": True, "test_dir": True, "mask_dir": True, "mask_suffix": False,
                "test_fraction": False, "skip_bad": False}
DATA_FOLDERS = tuple(name for name, folder in DATA_OPTIONS.items() if folder)
