"""SSIM against scikit-image's reference implementation."""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity

from ssimae.errors import SsimaeError
from ssimae.core.ssim_torch import (
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


@pytest.mark.parametrize("shape", [(2, 3, 128, 128), (1, 2, 9, 13), (1, 1, 4, 40), (1, 1, 129, 140)])
def test_filter_paths_match_scipy(shape):
    """Both ways of filtering (banded matrix products for patches, grouped convolution for
    larger images) against scipy.ndimage.correlate1d; "mirror" is reflection without
    repeating the edge sample, "nearest" the replication used where a side is too short."""
    from scipy import ndimage as ndi

    import ssimae.core.ssim_torch as S

    rng = np.random.default_rng(0)
    a = rng.random(shape)
    w = window_1d(11, 1.5, dtype=torch.float64)
    mode = "mirror" if min(shape[-2:]) > 5 else "nearest"
    ref = ndi.correlate1d(ndi.correlate1d(a, w.numpy(), axis=-1, mode=mode), w.numpy(), axis=-2, mode=mode)
    out = S._filter(torch.from_numpy(a), w).numpy()
    assert np.allclose(out, ref, atol=1e-12)
    assert (max(shape[-2:]) <= S.BAND_MAX_SIDE) == (shape[-1] != 140)  # which path ran


def test_filter_paths_agree_with_gradients(monkeypatch):
    """The SSIM loss and its gradient on a batch of 128x128 patches: banded path against
    the grouped convolution (BAND_MAX_SIDE = 0 forces the convolution)."""
    import ssimae.core.ssim_torch as S

    x = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    y = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss_band = ssim_loss(y, x)
    (g_band,) = torch.autograd.grad(loss_band, y)
    monkeypatch.setattr(S, "BAND_MAX_SIDE", 0)
    loss_conv = ssim_loss(y, x)
    (g_conv,) = torch.autograd.grad(loss_conv, y)
    assert loss_band.item() == pytest.approx(loss_conv.item(), abs=1e-6)
    assert torch.allclose(g_band, g_conv, atol=1e-9, rtol=1e-4)


def test_patch_sized_ssim_matches_skimage():
    """A 128x128 pair (the banded path) against skimage, away from the border."""
    img = data.brick()[:128, :128].astype(np.float64) / 255
    noisy = np.clip(img + np.random.default_rng(3).normal(0, 0.05, img.shape), 0, 1)
    ours = ssim_map(t(img), t(noisy))[0, 0].numpy()
    ref = sk_map(img, noisy, gaussian_weights=True, sigma=1.5)
    assert np.allclose(ours[B:-B, B:-B], ref[B:-B, B:-B], atol=1e-6)
