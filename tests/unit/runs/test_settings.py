"""Typed, versioned settings: round trips, checked types, and old checkpoints that still load.

tests/data/v1_*.pt.gz are checkpoints written by ssimae's version-1 format (flat config
dict, threshold beside it) with patterned weights; v1_residuals.npz holds the residual
maps that version's Detector computed from them for a seeded random image.
"""
import gzip
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers.floats import vae_outputs, vae_residual_tolerance

from ssimae.runs.checkpoint import load_checkpoint, save_checkpoint
from ssimae.inference.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.models.ssim_ae import SsimParams
from ssimae.models.vae import VaeParams
from ssimae.models.network import AutoEncoder
from ssimae.core.preprocess import Preprocess
from ssimae.runs.settings import InferenceSettings, RunSettings, TrainSettings, from_dict
from ssimae.core.ssim_torch import SsimOptions

DATA = Path(__file__).resolve().parents[2] / "data"


def unpack(name, tmp_path):
    path = tmp_path / f"{name}.pt"
    with gzip.open(DATA / f"{name}.pt.gz") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def test_version1_checkpoints_still_load_and_score_the_same(tmp_path):
    expected = np.load(DATA / "v1_residuals.npz")
    ssim = load_checkpoint(unpack("v1_ssim", tmp_path))["settings"]
    assert ssim.train == TrainSettings(model="ssim", latent_dim=8, epochs=2, patches_per_epoch=48, batch_size=8,
                                       seed=3, params=SsimParams(SsimOptions(window_size=7)))
    assert ssim.inference == InferenceSettings(preprocess=Preprocess(scale=0.5), stride=20, residual="ssim",
                                               ssim=SsimOptions(window_size=7), opening_diameter=3, threshold=0.25,
                                               threshold_rule="max-region", min_defect_area=5, seed=3)
    assert ssim.inference.threshold_rule == "max-region"  # the rule that chose its stored threshold
    vae = load_checkpoint(unpack("v1_vae", tmp_path))["settings"]
    assert vae.train.params == VaeParams(samples=3, obs_var=0.02, kl_weight=0.5)
    assert vae.inference.threshold is None and vae.inference.residual == "vae" and vae.inference.seed == 4
    img = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    ours = Detector.load(tmp_path / "v1_ssim.pt").residual_map(img)
    # the same up to float rounding (the latent layers became matrix products since)
    assert np.allclose(ours, expected["v1_ssim"], rtol=0, atol=1e-4 * np.abs(expected["v1_ssim"]).max())
    img = np.random.default_rng(0).random((60, 60)).astype(np.float32)
    ours, mean, second = vae_outputs(Detector.load(tmp_path / "v1_vae.pt"), img)
    assert_vae_residual_close(ours, expected["v1_vae"], img, mean, second, obs_var=0.02)


def assert_vae_residual_close(ours, expected, x, mean, second, obs_var, rel=1e-4):
    """The VAE residual R = 0.5 log(2 pi v) + (x - m)^2 / (2 v), v = s - m^2 + obs_var, equals
    ``expected`` up to a change of the network's float32 outputs m (mean) and s (second moment)
    by ``rel`` of their range, propagated to first order, plus ``rel`` of the residual's range.

    Why not a flat tolerance: v = s - m^2 cancels (v ~ 0.004 where s ~ 0.1), and with obs_var
    0.02 |dR/dv| reaches ~1500, so the ~1e-5 relative differences of float32 convolutions
    between CPU kernels (AVX2 / AVX-512 / other BLAS blockings) move R by up to ~1e-4 of its
    range; a wrong model, seed or obs_var moves it by orders of magnitude more.
    """
    bound = vae_residual_tolerance(x, mean, second, expected, obs_var, rel)
    x = x.astype(np.float64)
    v = np.maximum(second - mean**2, 0) + obs_var
    # our own residual from our outputs: the formula itself is exact to float32
    ours64 = 0.5 * np.log(2 * np.pi * v) + (x - mean) ** 2 / (2 * v)
    assert np.allclose(ours, ours64, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(ours - expected) <= bound)
    # and on most pixels (where the cancellation is mild) the flat tolerance holds
    assert np.mean(np.abs(ours - expected) <= rel * np.abs(expected).max()) > 0.99


def test_run_settings_round_trip_through_json():
    run = RunSettings(TrainSettings(model="vae", lr=1e-3, params=VaeParams(samples=4), data={"root": "/x"}),
                      InferenceSettings(preprocess=Preprocess(size=(64, 32)), stride=16, threshold=0.5))
    text = json.dumps(run.to_dict())
    back = RunSettings.from_dict(json.loads(text))
    assert back == run and back.inference.preprocess.size == (64, 32)
    assert RunSettings.from_dict(RunSettings().to_dict()) == RunSettings()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["train"].update(lr="fast"), "train.lr: expected float, got 'fast'"),
    (lambda d: d["train"].update(epochs=2.5), "train.epochs: expected int"),
    (lambda d: d["train"].update(epochs=True), "train.epochs: expected int"),
    (lambda d: d["inference"].update(strides=30), "unknown setting(s) strides"),
    (lambda d: d["inference"]["ssim"].update(window_size=4), "odd positive integer"),
    (lambda d: d["inference"].update(preprocess={"size": [1, 2, 3], "scale": None}), "preprocess.size"),
    (lambda d: d["train"].update(params={"samples": 2}), "unknown setting(s) samples"),
    (lambda d: d.update(version=7), "settings version 7"),
])
def test_bad_settings_are_one_clear_line(edit, message):
    d = RunSettings().to_dict()
    edit(d)
    with pytest.raises(SsimaeError) as e:
        RunSettings.from_dict(d)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_hand_edited_checkpoint_is_refused_with_its_name(tmp_path):
    p = tmp_path / "model.pt"
    save_checkpoint(p, settings=RunSettings(TrainSettings(latent_dim=4)), model=AutoEncoder(4).state_dict())
    ck = torch.load(p, weights_only=True)
    settings = json.loads(ck["settings"])
    settings["inference"]["stride"] = "thirty"
    ck["settings"] = json.dumps(settings)
    buf = io.BytesIO()
    torch.save(ck, buf)
    p.write_bytes(buf.getvalue())
    with pytest.raises(SsimaeError, match="damaged ssimae checkpoint.*inference.stride") as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)


def test_values_are_checked_before_any_work():
    for bad in ({"stride": 0}, {"opening_diameter": -1}, {"min_defect_area": -5}, {"threshold": float("nan")},
                {"threshold_rule": "magic"}):
        with pytest.raises(SsimaeError):
            InferenceSettings(**bad)
    for bad in ({"max_minutes": -1.0}, {"max_minutes": float("nan")}, {"val_fraction": 1.0}, {"epochs": 0}):
        with pytest.raises(SsimaeError):
            TrainSettings(**bad)
    with pytest.raises(SsimaeError, match="--vae-samples"):
        VaeParams(samples=0)
    with pytest.raises(SsimaeError, match="wrong: unknown setting"):
        from_dict(InferenceSettings, {"nope": 1}, "wrong")
