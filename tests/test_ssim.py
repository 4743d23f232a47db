"""SSIM against scikit-image's reference implementation."""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity

from ssimae.errors import SsimaeError
from ssimae.ssim import (
    GAUSSIAN_SIGMA,
    WINDOW_SIZE,
    SsimOptions,
    ssim_components,
    ssim_loss,
    ssim_map,
    window_1d,
)

B = WINDOW_SIZE // 2  # border where padding conventions differ


def sk_map(a, b, **kw):
    return structural_similarity(a, b, data_range=1.0, full=True, use_sample_covariance=False, **kw)[1]


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def test_paper_defaults():
    assert WINDOW_SIZE == 11 and GAUSSIAN_SIGMA == 1.5


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_map_matches_skimage_random(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((64, 80))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    ref = sk_map(a, b, gaussian_weights=True, sigma=1.5)
    ours = ssim_map(t(a), t(b)).numpy()[0, 0]
    assert np.abs(ours - ref)[B:-B, B:-B].max() < 1e-4


@pytest.mark.parametrize("texture", ["brick", "grass", "camera"])
def test_gaussian_map_matches_skimage_real_images(texture):
    a = getattr(data, texture)()[:200, :200].astype(np.float64) / 255
    rng = np.random.default_rng(3)
    b = np.clip(np.roll(a, 2, axis=1) * 0.9 + rng.normal(0, 0.03, a.shape), 0, 1)
    ref = sk_map(a, b, gaussian_weights=True, sigma=1.5)
    ours = ssim_map(t(a), t(b)).numpy()[0, 0]
    assert np.abs(ours - ref)[B:-B, B:-B].max() < 1e-4
    # float32 (the training dtype): rounding in flat regions costs up to ~1e-4 on photos;
    # residual maps for scoring are computed in float64 (tests/test_residual.py)
    ours32 = ssim_map(t(a.astype(np.float32)), t(b.astype(np.float32))).numpy()[0, 0]
    assert np.abs(ours32 - ref)[B:-B, B:-B].max() < 3e-4


def test_uniform_window_matches_skimage():
    rng = np.random.default_rng(5)
    a = rng.random((48, 48))
    b = np.clip(a * 0.7 + 0.2 * rng.random(a.shape), 0, 1)
    ref = sk_map(a, b, gaussian_weights=False, win_size=7)
    ours = ssim_map(t(a), t(b), window_size=7, gaussian=False).numpy()[0, 0]
    assert np.abs(ours - ref)[3:-3, 3:-3].max() < 1e-4


def test_components_product_equals_fused_map():
    rng = np.random.default_rng(1)
    a, b = t(rng.random((40, 40))), t(rng.random((40, 40)))
    lum, con, struct = ssim_components(a, b)
    assert torch.allclose(lum * con * struct, ssim_map(a, b), atol=1e-6)
    # general exponents go through the component path: an exponent of 1 + 1e-9 is the same map
    assert torch.allclose(ssim_map(a, b, gamma=1 + 1e-9), ssim_map(a, b), atol=1e-6)
    # alpha=2 squares the luminance term
    assert torch.allclose(ssim_map(a, b, alpha=2.0), lum**2 * con * struct, atol=1e-6)
    assert (lum >= 0).all() and (lum <= 1 + 1e-6).all() and (con <= 1 + 1e-6).all()


def test_identical_images_and_loss():
    a = t(data.brick()[:64, :64].astype(np.float32) / 255)
    assert torch.allclose(ssim_map(a, a), torch.ones_like(a), atol=1e-5)
    assert abs(ssim_loss(a, a).item()) < 1e-5
    b = a.flip(-1)
    assert ssim_loss(a, b).item() == pytest.approx(1 - ssim_map(a, b).mean().item(), abs=1e-6)


def test_gradient_finite_on_flat_patches():
    x = torch.full((2, 1, 32, 32), 0.5, requires_grad=True)
    y = torch.full((2, 1, 32, 32), 0.5)
    for kw in ({}, {"gamma": 1.5}):
        loss = ssim_loss(x, y, **kw)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all()


def test_window_normalised():
    w = window_1d(11, 1.5)
    assert w.sum().item() == pytest.approx(1.0)
    ref = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    assert np.allclose(w.numpy(), ref / ref.sum())
    with pytest.raises(ValueError):
        window_1d(10)


def test_options_are_the_papers_and_checked():
    opts = SsimOptions()
    assert opts.kwargs() == {"window_size": 11, "sigma": 1.5, "gaussian": True, "alpha": 1.0, "beta": 1.0,
                             "gamma": 1.0, "data_range": 1.0}
    a, b = torch.rand(1, 1, 30, 30), torch.rand(1, 1, 30, 30)
    assert torch.equal(ssim_map(a, b, **opts.kwargs()), ssim_map(a, b))
    for bad in ({"window_size": 0}, {"window_size": 8}, {"sigma": 0.0}, {"sigma": float("nan")}):
        with pytest.raises(SsimaeError):
            SsimOptions(**bad)
