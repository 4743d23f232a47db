"""Synthetic anomalies (DRAEM): Perlin noise against its definition, masks against the pixels changed."""
import math

import numpy as np
import pytest
import torch

from ssimae.models import get_model
from ssimae.models.draem_net import focal_loss
from ssimae.data.synthetic import add_anomaly, fade, perlin_mask, perlin_noise, source_textures


def perlin_at(py: float, px: float, grads: np.ndarray) -> float:
    """Perlin's 2D gradient noise at (py, px) in lattice units, straight from the definition."""
    y0, x0 = min(int(math.floor(py)), grads.shape[0] - 2), min(int(math.floor(px)), grads.shape[1] - 2)
    total = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            gy, gx = grads[y0 + dy, x0 + dx]
            dot = gy * (py - y0 - dy) + gx * (px - x0 - dx)
            wy = fade(np.float64(py - y0)) if dy else 1 - fade(np.float64(py - y0))
            wx = fade(np.float64(px - x0)) if dx else 1 - fade(np.float64(px - x0))
            total += wy * wx * dot
    return total


@pytest.mark.parametrize("shape, res", [((32, 48), (2, 3)), ((17, 9), (4, 1)), ((64, 64), (8, 8))])
def test_perlin_noise_matches_its_definition_pixel_by_pixel(shape, res):
    got = perlin_noise(shape, res, np.random.default_rng(3))
    angles = np.random.default_rng(3).uniform(0, 2 * np.pi, (res[0] + 1, res[1] + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)
    for r in range(shape[0]):
        for c in range(shape[1]):
            ref = perlin_at((r + 0.5) * res[0] / shape[0], (c + 0.5) * res[1] / shape[1], grads)
            assert abs(got[r, c] - ref) < 1e-12
    assert np.abs(got).max() <= math.sqrt(0.5) + 1e-9


def test_fade_has_flat_ends():
    t = np.array([0.0, 1.0])
    assert np.allclose(fade(t), [0, 1])
    eps = 1e-6
    assert np.allclose((fade(t + eps) - fade(t - eps)) / (2 * eps), 0, atol=1e-6)


def test_anomaly_changes_exactly_the_masked_pixels():
    rng = np.random.default_rng(0)
    sources = source_textures(("grass", "camera"))
    seen = 0
    for _ in range(30):
        img = rng.random((64, 64)).astype(np.float32)
        out, mask = add_anomaly(img, rng, sources, p_anomaly=1.0)
        assert out.shape == img.shape and out.dtype == np.float32 and mask.dtype == bool
        assert np.array_equal(out[~mask], img[~mask])  # untouched outside, bit for bit
        assert 0 <= out.min() and out.max() <= 1
        if mask.any():
            seen += 1
            assert np.mean(out[mask] != img[mask]) > 0.9  # the blend changes (nearly) every masked pixel
    assert seen >= 20
    img = rng.random((64, 64)).astype(np.float32)
    out, mask = add_anomaly(img, np.random.default_rng(1), sources, p_anomaly=1e-9)
    assert not mask.any() and np.array_equal(out, img)


def test_perlin_masks_vary_in_scale_and_cover_a_share_of_the_image():
    rng = np.random.default_rng(5)
    shares = [perlin_mask((128, 128), rng).mean() for _ in range(40)]
    assert 0 < np.mean(shares) < 0.5 and max(shares) > 0.05


def test_focal_loss_against_its_formula():
    logits = torch.tensor([2.0, -1.0, 0.5])
    target = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits)
    pt = torch.where(target == 1, p, 1 - p)
    assert torch.allclose(focal_loss(logits, target), (-(1 - pt) ** 2 * torch.log(pt)).mean())


def test_draem_trains_and_outputs_a_probability_map():
    model = get_model("draem")
    params = model.Params(width=4, train_crop=32)
    net = model.build(100, params)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    torch.manual_seed(0)
    x = torch.rand(4, 1, 64, 64)
    losses, loss_fn = [], model.loss(net, params, "cpu")
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    with torch.no_grad():
        y = net.eval()(x)
    assert y.shape == (4, 2, 64, 64) and 0 <= y[:, 1].min() and y[:, 1].max() <= 1


def test_draem_recon_learns_to_remove_pasted_anomalies_from_its_input():
    """The reconstruction network's loss compares its output on the anomalous patch with the
    clean patch: trained a few steps on one clean batch, its loss falls."""
    model = get_model("draem-recon")
    params = model.Params(width=4, train_crop=32)
    net = model.build(100, params)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    torch.manual_seed(0)
    x = torch.rand(4, 1, 64, 64) * 0.2 + 0.4
    loss_fn = model.loss(net, params, "cpu")
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


# --- cut-and-paste (NSA) and texture removal --------------------------------------------------------

def test_cut_paste_moves_a_piece_of_the_donor_into_exactly_the_masked_pixels():
    """Outside the mask bit-identical; inside, the donor's piece (from one rectangle of the
    donor, same shape as the mask's bounding box), shifted in brightness and blended:
    (1 - beta) * clip(piece + shift) + beta * target, which the test solves for and checks
    with one (shift, beta) per paste (a least-squares fit must leave no residual)."""
    from ssimae.data.synthetic import cut_paste

    rng = np.random.default_rng(0)
    for _ in range(5):
        img = rng.random((48, 64)).astype(np.float32) * 0.6 + 0.2
        donor = rng.random((48, 64)).astype(np.float32) * 0.6 + 0.2
        out, mask = cut_paste(img, donor, rng)
        assert out.dtype == np.float32 and mask.any() and not mask.all()
        assert np.array_equal(out[~mask], img[~mask])
        ys, xs = np.nonzero(mask)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        ph, pw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        inside = mask[box]
        fits = []
        for sy in range(48 - ph + 1):  # brute force: which piece of the donor was pasted?
            for sx in range(64 - pw + 1):
                piece = donor[sy:sy + ph, sx:sx + pw][inside].astype(np.float64)
                a = np.stack([piece, np.ones_like(piece), img[box][inside]], 1)
                # out = (1-b) * piece + (1-b) * shift + b * target (no clipping: values stay inside [0, 1])
                coef, *_ = np.linalg.lstsq(a, out[box][inside].astype(np.float64), rcond=None)
                fits.append(np.abs(a @ coef - out[box][inside]).max())
        assert min(fits) < 1e-5  # float32 rounding of the blend


def test_cut_paste_from_the_image_itself_is_a_piece_of_it():
    from ssimae.data.synthetic import cut_paste

    rng = np.random.default_rng(1)
    img = rng.random((32, 32)).astype(np.float32)
    out, mask = cut_paste(img, img, rng)
    assert np.array_equal(out[~mask], img[~mask]) and 0 <= out.min() and out.max() <= 1


def test_texture_removal_replaces_the_region_by_a_smoother_one():
    """Outside the mask bit-identical; inside, the local variation (the mean absolute
    difference of horizontal neighbours both in the mask) falls: texture is removed."""
    from ssimae.data.synthetic import remove_texture

    rng = np.random.default_rng(2)
    seen = 0
    for _ in range(20):
        img = rng.random((64, 64)).astype(np.float32)
        out, mask = remove_texture(img, rng)
        assert np.array_equal(out[~mask], img[~mask])
        both = mask[:, 1:] & mask[:, :-1]
        if both.sum() > 20:
            seen += 1
            before = np.abs(np.diff(img, axis=1))[both].mean()
            after = np.abs(np.diff(out, axis=1))[both].mean()
            assert after < 0.5 * before
    assert seen >= 10


@pytest.mark.parametrize("kind", ["cutpaste", "removal", "mixed", "perlin-removal"])
def test_every_kind_changes_only_its_mask_and_keeps_p_anomaly(kind):
    from ssimae.data.synthetic import make_anomaly

    rng = np.random.default_rng(3)
    sources = source_textures(("grass",))
    changed = 0
    for _ in range(40):
        img, donor = rng.random((2, 32, 32)).astype(np.float32)
        out, mask = make_anomaly(img, donor, rng, sources, kind, p_anomaly=0.5)
        assert np.array_equal(out[~mask], img[~mask])
        changed += mask.any()
    assert 8 <= changed <= 32  # about half (binomial(40, 0.5): 8..32 covers it but for 1e-5)


def test_perlin_kind_is_draems_rule_draw_for_draw():
    from ssimae.data.synthetic import make_anomaly

    sources = source_textures(("grass",))
    img = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    a = make_anomaly(img, img, np.random.default_rng(9), sources, "perlin", 1.0)
    b = add_anomaly(img, np.random.default_rng(9), sources, 1.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_draem_trains_on_each_kind_and_refuses_an_unknown_one():
    from ssimae.errors import SsimaeError
    from ssimae.models.draem_net import synthetic_batch

    model = get_model("draem")
    for kind in ("cutpaste", "removal", "mixed"):
        params = model.Params(width=4, train_crop=32, anomalies=kind, p_anomaly=1.0)
        torch.manual_seed(0)
        x = torch.rand(4, 2, 32, 32)
        xa, mask = synthetic_batch(x, params, source_textures(("grass",)))
        assert xa.shape == x.shape and mask.shape == (4, 1, 32, 32)
        outside = (mask == 0).expand_as(x)
        assert torch.equal(xa[outside], x[outside])  # both channels changed in one region
        loss = model.loss(model.build(100, params, channels=1), params, "cpu")(x[:, :1])
        assert torch.isfinite(loss)
    with pytest.raises(SsimaeError, match="--anomalies"):
        model.Params(anomalies="nope")
