"""Every number the paper states is the default (Bergmann et al. 2019, Table 1 and Sec. 4.2)."""
from dataclasses import asdict

import pytest

from ssimae.cli.main import build_parser, run_settings
from ssimae.models.alexnet import FM_WEIGHT
from ssimae.models import MODELS
from ssimae.models.fm_ae import FmParams
from ssimae.models.vae import VaeParams
from ssimae.core.morphology import OPENING_DIAMETER, disk
from ssimae.models.network import DEFAULT_LATENT_DIM, LEAKY_SLOPE, PATCH_SIZE
from ssimae.training.patches import PATCHES_PER_EPOCH
from ssimae.runs.recipes import PRESETS, apply_preset
from ssimae.runs.settings import InferenceSettings, TrainSettings
from ssimae.core.ssim_torch import GAUSSIAN_SIGMA, WINDOW_SIZE
from ssimae.core.window import STRIDE

PAPER_SSIM = {"window_size": 11, "sigma": 1.5, "gaussian": True, "alpha": 1.0, "beta": 1.0, "gamma": 1.0,
              "data_range": 1.0}


def test_module_constants():
    assert PATCH_SIZE == 128 and LEAKY_SLOPE == 0.2 and DEFAULT_LATENT_DIM == 100
    assert WINDOW_SIZE == 11 and GAUSSIAN_SIGMA == 1.5
    assert PATCHES_PER_EPOCH == 10_000 and STRIDE == 30
    assert OPENING_DIAMETER == 4 and disk(4).sum() == 12
    assert FM_WEIGHT == 1.0


def test_settings_defaults():
    t, i = TrainSettings(), InferenceSettings()
    assert (t.lr, t.weight_decay, t.epochs, t.patches_per_epoch) == (2e-4, 1e-5, 200, 10_000)
    assert t.latent_dim == 100 and t.val_fraction == 0.1
    assert (i.stride, i.opening_diameter, i.min_defect_area) == (30, 4, 0)
    assert asdict(i.ssim) == PAPER_SSIM
    assert VaeParams().samples == 6 and FmParams().weight == 1.0
    assert asdict(TrainSettings(model="ssim").params.ssim) == PAPER_SSIM  # the loss's SSIM too
    assert list(MODELS)[:4] == ["ssim", "l2", "vae", "fm"]  # the paper's four, then those beyond it
    assert all(MODELS[m].recipe == "paper" for m in ("ssim", "l2", "vae", "fm"))  # trained as the paper says


def parse_train(*extra):
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", *extra])
    return run_settings(args, args.model)


def test_command_line_defaults_are_the_papers():
    r = parse_train()
    t, i = r.train, r.inference
    assert t.model == "ssim"
    assert (t.lr, t.weight_decay, t.epochs, t.patches_per_epoch, t.latent_dim) == (2e-4, 1e-5, 200, 10_000, 100)
    assert (i.stride, i.opening_diameter) == (30, 4)
    assert asdict(i.ssim) == PAPER_SSIM and asdict(t.params.ssim) == PAPER_SSIM
    assert i.preprocess.size is None and i.preprocess.scale is None
    assert i.preprocess.color is False and i.preprocess.channels == 1  # the paper is gray-only
    assert parse_train("--model", "vae").train.params.samples == 6
    assert parse_train("--model", "fm").train.params.weight == 1.0


def test_presets():
    assert PRESETS["texture"] == {"latent_dim": 100, "resize": (256, 256)}
    assert PRESETS["nanotwice"]["latent_dim"] == 500
    r = parse_train("--preset", "texture")
    assert r.train.latent_dim == 100 and r.inference.preprocess.size == (256, 256)
    assert parse_train("--preset", "nanotwice").train.latent_dim == 500
    # explicit options win over the preset
    r = parse_train("--preset", "nanotwice", "--latent-dim", "64", "--resize", "300x200")
    assert r.train.latent_dim == 64 and r.inference.preprocess.size == (300, 200)
    assert apply_preset(None, {"latent_dim": None}) == {"latent_dim": None}
    with pytest.raises(ValueError):
        apply_preset("fabric", {})
