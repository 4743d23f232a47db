"""Residual maps against their definitions (scipy for the Gaussian log-density)."""
import numpy as np
import pytest
import torch
from scipy.stats import norm
from skimage.metrics import structural_similarity

from ssimae.errors import SsimaeError
from ssimae.models import MODELS
from ssimae.models.vae import VaeParams
from ssimae.core.residual import ResidualContext, l2_residual, residual_map, vae_residual
from ssimae.runs.settings import InferenceSettings

CTX = ResidualContext(InferenceSettings())


def test_l2_residual():
    x, y = torch.rand(20, 20), torch.rand(20, 20)
    assert torch.allclose(l2_residual(x, y), (x - y) ** 2)
    assert torch.allclose(residual_map("l2", x, {"recon": y}, CTX).float(), l2_residual(x, y))


def test_ssim_residual_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.random((60, 60))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = 1 - structural_similarity(a, b, data_range=1, full=True, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)[1]
    ours = residual_map("ssim", torch.from_numpy(a), {"recon": torch.from_numpy(b)}, CTX).numpy()
    assert np.abs(ours - ref)[5:-5, 5:-5].max() < 1e-4
    # float32 inputs are scored in float64: still within 1e-5 on a real photo's flat sky
    from skimage import data
    a = data.camera()[:200, :200].astype(np.float64) / 255
    b = np.clip(np.roll(a, 2, axis=1) * 0.9 + rng.normal(0, 0.03, a.shape), 0, 1)
    ref = 1 - structural_similarity(a, b, data_range=1, full=True, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)[1]
    ours = residual_map("ssim", torch.from_numpy(a).float(), {"recon": torch.from_numpy(b).float()}, CTX).numpy()
    assert np.abs(ours - ref)[5:-5, 5:-5].max() < 1e-5


def test_vae_residual_is_gaussian_nll():
    rng = np.random.default_rng(1)
    x, mean = rng.random((8, 8)), rng.random((8, 8))
    var = rng.random((8, 8)) * 0.05
    ours = vae_residual(torch.from_numpy(x), torch.from_numpy(mean), torch.from_numpy(var), 0.01).numpy()
    ref = -norm.logpdf(x, loc=mean, scale=np.sqrt(var + 0.01))
    assert np.allclose(ours, ref)


def test_vae_residual_from_pooled_moments():
    # outputs = (mean, second moment) of N decodings -> variance = E[y^2] - E[y]^2
    samples = torch.rand(6, 10, 10)
    x = torch.rand(10, 10)
    outputs = {"recon": samples.mean(0), "second_moment": (samples**2).mean(0)}
    ours = residual_map("vae", x, outputs, ResidualContext(InferenceSettings(), VaeParams(obs_var=0.01)))
    var = samples.var(0, unbiased=False)
    ref = -norm.logpdf(x.numpy(), loc=samples.mean(0).numpy(), scale=np.sqrt(var.numpy() + 0.01))
    assert np.allclose(ours.numpy(), ref, atol=1e-5)
    with pytest.raises(SsimaeError, match="second_moment"):
        residual_map("vae", x, {"recon": outputs["recon"]}, CTX)


def test_default_residual_per_model():
    assert {n: m.default_residual for n, m in MODELS.items()} == {"l2": "l2", "ssim": "ssim", "fm": "l2", "vae": "vae",
                                                                   "inpaint": "ssim", "draem": "draem",
                                                                   "draem-recon": "msgms"}
    with pytest.raises(SsimaeError, match="unknown residual 'l1'"):
        residual_map("l1", torch.zeros(4, 4), {"recon": torch.zeros(4, 4)}, CTX)
