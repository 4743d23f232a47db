"""Every number the paper states is the default (Bergmann et al. 2019, Table 1 and Sec. 4.2)."""
import pytest

from ssimae.cli import build_parser, train_config
from ssimae.features import FM_WEIGHT
from ssimae.model import DEFAULT_LATENT_DIM, LEAKY_SLOPE, PATCH_SIZE
from ssimae.morphology import OPENING_DIAMETER, disk
from ssimae.patches import PATCHES_PER_EPOCH
from ssimae.presets import PRESETS, apply_preset
from ssimae.ssim import GAUSSIAN_SIGMA, WINDOW_SIZE
from ssimae.train import TrainConfig
from ssimae.window import STRIDE


def test_module_constants():
    assert PATCH_SIZE == 128 and LEAKY_SLOPE == 0.2 and DEFAULT_LATENT_DIM == 100
    assert WINDOW_SIZE == 11 and GAUSSIAN_SIGMA == 1.5
    assert PATCHES_PER_EPOCH == 10_000 and STRIDE == 30
    assert OPENING_DIAMETER == 4 and disk(4).sum() == 12
    assert FM_WEIGHT == 1.0


def test_train_config_defaults():
    c = TrainConfig()
    assert (c.lr, c.weight_decay, c.epochs, c.patches_per_epoch) == (2e-4, 1e-5, 200, 10_000)
    assert (c.latent_dim, c.stride, c.opening_diameter, c.vae_samples, c.fm_weight) == (100, 30, 4, 6, 1.0)
    assert c.ssim == {"window_size": 11, "sigma": 1.5, "gaussian": True, "alpha": 1.0, "beta": 1.0, "gamma": 1.0,
                      "data_range": 1.0}
    assert c.val_fraction == 0.1 and c.min_defect_area == 0


def parse_train(*extra):
    args = build_parser().parse_args(["train", "--data", "x", "--out", "y", *extra])
    return train_config(args, args.model)


def test_command_line_defaults_are_the_papers():
    c = parse_train()
    assert c.model == "ssim"
    assert (c.lr, c.weight_decay, c.epochs, c.patches_per_epoch, c.latent_dim) == (2e-4, 1e-5, 200, 10_000, 100)
    assert (c.stride, c.opening_diameter, c.vae_samples, c.fm_weight) == (30, 4, 6, 1.0)
    assert c.ssim["window_size"] == 11 and c.ssim["gaussian"] and c.preprocess == {"size": None, "scale": None}


def test_presets():
    assert PRESETS["texture"] == {"latent_dim": 100, "resize": (256, 256)}
    assert PRESETS["nanotwice"]["latent_dim"] == 500
    c = parse_train("--preset", "texture")
    assert c.latent_dim == 100 and c.preprocess["size"] == [256, 256]
    assert parse_train("--preset", "nanotwice").latent_dim == 500
    # explicit options win over the preset
    c = parse_train("--preset", "nanotwice", "--latent-dim", "64", "--resize", "300x200")
    assert c.latent_dim == 64 and c.preprocess["size"] == [300, 200]
    assert apply_preset(None, {"latent_dim": None}) == {"latent_dim": None}
    with pytest.raises(ValueError):
        apply_preset("fabric", {})
