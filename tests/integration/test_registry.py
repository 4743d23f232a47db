"""A fifth model and a new residual, defined entirely here, go through train, evaluate,
predict and compare without any change to the package (the registry of ssimae.models and
ssimae.core.residual)."""
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from tests.helpers.clicheck import TINY
from tests.helpers.floats import maps_close

from ssimae.cli.main import main
from ssimae.commands.compare import compare
from ssimae.inference.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.commands.evaluate import evaluate
from ssimae.io.images import read_image
from ssimae.models import MODELS, Model, register_model, unregister_model
from ssimae.models.network import AutoEncoder
from ssimae.commands.predict import predict
from ssimae.core.residual import RESIDUALS, register_residual, unregister_residual
from ssimae.runs.settings import InferenceSettings, RunSettings, TrainSettings


@dataclass(frozen=True)
class ToyParams:
    scale: float = field(default=1.0, metadata={"flag": "--toy-scale", "help": "toy: output scale"})


class ToyAE(Model):
    """An l1-autoencoder whose inference also returns the reconstruction times ``scale``."""

    name = "toy"
    title = "toy-AE"
    Params = ToyParams
    default_residual = "toy-abs"
    compare_residuals = ("toy-abs", "l2")
    outputs = ("recon", "scaled")

    def loss(self, net, params, device):
        return lambda x: (net(x) - x).abs().mean()

    def patch_fn(self, net, params, seed):
        return lambda batch: torch.cat([net(batch), params.scale * net(batch)], dim=1)


def toy_abs(x, out, ctx):
    """|x - recon|, read from the toy's extra output (so it needs that output)."""
    return (x - out["scaled"] / ctx.params.scale).abs()


@pytest.fixture
def toy():
    register_model(ToyAE)
    register_residual("toy-abs", needs=("scaled",), description="|x - x_hat|")(toy_abs)
    yield
    unregister_model("toy")
    unregister_residual("toy-abs")
    assert "toy" not in MODELS and "toy-abs" not in RESIDUALS


@pytest.mark.kernels  # predict's batches against one image's: tests/helpers/floats.py
def test_toy_model_trains_evaluates_and_predicts(toy, demo_root, tmp_path):
    run = RunSettings(TrainSettings(model="toy", latent_dim=8, epochs=1, patches_per_epoch=24, batch_size=8,
                                    params=ToyParams(scale=2.0)), InferenceSettings())
    from ssimae.commands.train import train

    ckpt = train(run, str(demo_root), tmp_path / "run", progress=False, log=lambda *a: None)
    det = Detector.load(ckpt)
    assert det.model.name == "toy" and det.params == ToyParams(scale=2.0) and det.default_residual == "toy-abs"
    assert det.threshold is not None and type(det.network) is AutoEncoder
    # the residual is |x - x_hat| of the sliding-window reconstruction, at the image's resolution
    img = read_image(demo_root / "test" / "cut" / "000.png")
    recon, maps = det.analyze_many(img, ("toy-abs", "l2"))
    assert np.allclose(maps["toy-abs"], np.abs(img - recon), atol=1e-5)
    assert np.allclose(maps["l2"], (img - recon) ** 2, atol=1e-5)

    own = evaluate(ckpt, str(demo_root), tmp_path / "ev", progress=False, log=lambda *a: None)
    l2 = evaluate(ckpt, str(demo_root), tmp_path / "ev2", residual="l2", progress=False, log=lambda *a: None)
    assert own["model"] == "toy" and own["residual"] == "toy-abs"
    # |d| and d^2 order pixels alike, and the opening commutes with increasing maps: same ROC
    assert own["pixel_roc_auc"] == pytest.approx(l2["pixel_roc_auc"], abs=1e-6)

    written = predict(ckpt, [demo_root / "test" / "cut"], tmp_path / "pred", save_raw=True, progress=False,
                      log=lambda *a: None)
    assert len(written) == len(list((demo_root / "test" / "cut").glob("*.png")))
    # predict sends the patches of up to 8 images through the network together, residual_map
    # those of one image: another batch composition, so the sums round differently (floats.py)
    maps_close(np.load(f"{written[0]}.npy"), det.residual_map(read_image(demo_root / "test/cut/000.png")))


def test_toy_model_on_the_command_line_and_in_compare(toy, demo_root, tmp_path, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--data", str(demo_root), "--model", "toy", "--toy-scale", "3", "--out", str(run),
                 *TINY]) == 0
    assert Detector.load(run).params.scale == 3.0
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev"), "--residual", "toy-abs", "--quiet"]) == 0
    rows = compare([RunSettings(TrainSettings(model="toy", latent_dim=8, epochs=1, patches_per_epoch=16,
                                              batch_size=8))], str(demo_root), tmp_path / "cmp", progress=False,
                   log=lambda *a: None)
    assert [(r["model"], r["residual"]) for r in rows] == [("toy", "toy-abs"), ("toy", "l2")]


def test_a_residual_needs_its_outputs(toy, demo_root):
    det = Detector(AutoEncoder(8), "ssim")  # outputs only "recon"
    with pytest.raises(SsimaeError, match="toy-abs residual needs the model output"):
        det.residual_map(np.zeros((128, 128), np.float32), "toy-abs")


def test_registry_refuses_duplicates_and_unknown_names(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_model(ToyAE)
    with pytest.raises(ValueError, match="already registered"):
        register_residual("toy-abs")(toy_abs)
    with pytest.raises(SsimaeError, match="unknown model 'nope'; choose from ssim, l2, vae, fm, inpaint, draem, draem-recon, toy"):
        TrainSettings(model="nope")
