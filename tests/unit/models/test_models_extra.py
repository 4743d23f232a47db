"""The VAE (reconstruction probability), the feature-matching AE and the comparison."""
import json

import numpy as np
import pytest
import torch
from tests.helpers.clicheck import TINY
from tests.helpers.floats import vae_residual_tolerance
from tests.helpers.htmlpage import parse
from scipy.stats import norm

from ssimae.cli.main import main
from ssimae.commands.compare import example_indices
from ssimae.inference.detector import Detector
from ssimae.models.vae import VaeParams
from ssimae.models.vae_net import VAE
from ssimae.runs.settings import InferenceSettings


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """No network and an empty torch hub cache, like this machine."""
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    yield
    torch.hub.set_dir(str(tmp_path / "hub-unused"))


def alexnet_file(path):
    """A stand-in for alexnet-owt-7be5be79.pth: the torchvision keys and shapes, random values."""
    g = torch.Generator().manual_seed(0)
    shapes = {"features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,), "features.3.weight": (192, 64, 5, 5),
              "features.3.bias": (192,), "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
              "features.8.weight": (256, 384, 3, 3), "classifier.1.weight": (16, 8)}
    torch.save({k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}, path)
    return path


def vae_detector(seed=0, samples=6):
    torch.manual_seed(1)
    return Detector(VAE(4), "vae", InferenceSettings(seed=seed), VaeParams(samples=samples, obs_var=0.01))


@pytest.mark.kernels  # the samples decoded together against one at a time: tests/helpers/floats.py
def test_vae_residual_equals_reconstruction_probability_by_hand():
    det = vae_detector()
    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)  # one patch: no averaging
    ours = det.residual_map(img)
    # brute force: N decodings of z ~ Q(z|x) drawn with the same seeded generator
    x = torch.from_numpy(img)[None, None]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = det.network.encode(x)
        dec = torch.stack([det.network.decode(mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g))
                           for _ in range(6)]).double().numpy()[:, 0, 0]
    ref = -norm.logpdf(img, loc=dec.mean(0), scale=np.sqrt(dec.var(0) + 0.01))
    # the detector decodes the samples in one batch, the brute force one at a time: outputs
    # within the rounding of floats.py, propagated through the residual
    bound = vae_residual_tolerance(img, dec.mean(0), (dec**2).mean(0), ref, obs_var=0.01)
    assert np.all(np.abs(ours - ref) <= bound), float(np.abs(ours - ref).max())


def test_vae_scoring_deterministic_under_seed():
    img = np.random.default_rng(1).random((150, 170)).astype(np.float32)
    a, b = vae_detector(0).residual_map(img), vae_detector(0).residual_map(img)
    assert np.array_equal(a, b)
    c = vae_detector(5).residual_map(img)
    assert not np.array_equal(a, c)
    assert vae_detector().params.samples == 6 == VaeParams().samples  # the paper's N


def test_vae_trains_and_evaluates(demo_root, tmp_path):
    run = tmp_path / "vae"
    assert main(["train", "--data", str(demo_root), "--model", "vae", "--out", str(run), *TINY]) == 0
    out = tmp_path / "rep"
    assert main(["evaluate", str(run), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "vae" and m["residual"] == "vae" and 0 <= m["pixel_roc_auc"] <= 1


def test_fm_trains_with_given_weights(demo_root, tmp_path):
    weights = alexnet_file(tmp_path / "alexnet-owt-7be5be79.pth")
    run = tmp_path / "fm"
    assert main(["train", "--data", str(demo_root), "--model", "fm", "--out", str(run),
                 "--alexnet-weights", str(weights), *TINY]) == 0
    det = Detector.load(run)
    assert det.model.name == "fm" and det.default_residual == "l2" and det.params.weight == 1.0
    # AlexNet's weights are not part of the autoencoder's checkpoint
    assert not any(k.startswith("features.") for k in torch.load(run / "model.pt", weights_only=True)["model"])


def test_fm_without_weights_is_one_clear_error(demo_root, tmp_path, capsys):
    assert main(["train", "--data", str(demo_root), "--model", "fm", "--out", str(tmp_path / "fm"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "alexnet-owt-7be5be79.pth" in err and "--alexnet-weights" in err


def test_compare_skips_fm_without_weights(demo_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(demo_root), "--models", "ssim,l2,vae,fm", "--out", str(out), *TINY]) == 0
    assert "skipping the FM-AE" in capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())
    got = {(r["model"], r["residual"]) for r in rows}
    assert {("ssim", "ssim"), ("ssim", "l2"), ("l2", "l2"), ("l2", "ssim"), ("vae", "vae")} <= got
    assert any(r["model"] == "fm" and r["residual"].startswith("skipped") for r in rows)
    for name in ("roc.png", "examples.png", "results.md"):
        assert (out / name).stat().st_size > 0
    for sub in ("ssim-ssim", "l2-ssim", "vae-vae"):
        m = json.loads((out / "reports" / sub / "metrics.json").read_text())
        assert m["model"] == sub.split("-")[0]
    # report.html: the table of results.json, links that resolve, every test image in the model's report
    page = parse(out)
    assert len(page.tables["metrics"]) == len(rows)
    assert "reports/ssim-ssim/report.html" in page.links and "reports/ssim-l2/report.html" in page.links
    own = parse(out / "reports" / "ssim-ssim")
    assert len(own.tables["images"]) == len(list((demo_root / "test").rglob("*.png")))
    # the same residual of the same model gives the same AUC as evaluate would
    r = next(r for r in rows if r["model"] == "ssim" and r["residual"] == "ssim")
    assert main(["evaluate", str(out / "runs" / "ssim"), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["pixel_roc_auc"] == pytest.approx(r["pixel_roc_auc"])
    # run again: finished runs are reused, and the table still reports their training time
    assert main(["compare", "--data", str(demo_root), "--models", "ssim", "--out", str(out), *TINY]) == 0
    assert "reusing the trained run" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())[0]
    assert again["train_minutes"] == pytest.approx(r["train_minutes"])
    assert again["pixel_roc_auc"] == pytest.approx(r["pixel_roc_auc"])


def test_example_images_one_per_type_then_good():
    types = ["good", "cut", "cut", "spot", "good", "cut"]
    assert example_indices(types, 4) == [1, 3, 2, 0]
    areas = [0, 5, 50, 7, 0, 20]  # largest defect of each type first
    assert example_indices(types, 4, areas) == [2, 3, 5, 0]
    assert example_indices(types, 2, areas) == [2, 0]
    assert example_indices(["good"], 4) == [0]


def test_compare_with_fm_weights(demo_root, tmp_path):
    weights = alexnet_file(tmp_path / "alexnet-owt-7be5be79.pth")
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(demo_root), "--models", "fm", "--alexnet-weights", str(weights),
                 "--out", str(out), *TINY]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["model"], r["residual"]) for r in rows} == {("fm", "l2"), ("fm", "ssim")}
