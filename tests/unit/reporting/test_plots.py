"""Tests for ssimae.reporting.plots: exact-size images, colormaps, overlays, figures, tables."""
from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from ssimae.errors import SsimaeError
from ssimae.reporting.tables import markdown_table
from ssimae.reporting.plots import (
    comparison_figure,
    heatmap_rgb,
    overlay_rgb,
    plot_roc,
    save_heatmap,
    save_mask,
    save_overlay,
)


def read(path):
    with Image.open(path) as im:
        return im.mode, im.size, np.asarray(im)


def square_mask(h=40, w=56):
    m = np.zeros((h, w), bool)
    m[10:20, 15:30] = True
    return m


def test_save_mask_exact_values(tmp_path):
    m = square_mask()
    mode, size, px = read(save_mask(m, tmp_path / "out" / "mask.png"))
    assert size == (56, 40) and mode == "L"
    assert set(np.unique(px)) == {0, 255}
    np.testing.assert_array_equal(px == 255, m)


def test_heatmap_size_and_matches_matplotlib(tmp_path):
    ramp = np.tile(np.linspace(0, 2, 300), (7, 1))
    rgb = heatmap_rgb(ramp)
    assert rgb.shape == (7, 300, 3) and rgb.dtype == np.uint8
    expected = matplotlib.colormaps["inferno"](ramp / 2.0, bytes=True)[..., :3]
    np.testing.assert_array_equal(rgb, expected)
    # Monotone: each pixel's nearest entry in the colormap's lookup table never decreases.
    lut = matplotlib.colormaps["inferno"](np.linspace(0, 1, 256), bytes=True)[:, :3].astype(int)
    idx = np.argmin(((rgb[0, :, None, :].astype(int) - lut[None]) ** 2).sum(-1), axis=1)
    assert np.all(np.diff(idx) >= 0) and idx[0] == 0 and idx[-1] == 255
    mode, size, px = read(save_heatmap(ramp, tmp_path / "heat.png"))
    assert mode == "RGB" and size[0] > 300 and size[1] >= 7
    np.testing.assert_array_equal(px[:7, :300], rgb)  # the map, pixel for pixel, at the top left


def test_every_heat_map_file_has_its_colour_bar(tmp_path):
    """Right of the map: a bar whose rows run through the colour map from the top of the scale
    (2 x threshold) down to 0, a black line at the threshold's row, and dark label text."""
    from ssimae.reporting.plots import BAR_GAP, BAR_WIDTH

    residual = np.tile(np.linspace(0, 1, 50), (120, 1))
    _, (width, height), px = read(save_heatmap(residual, tmp_path / "heat.png", vmax=1.0, threshold=0.5))
    assert width > 50 + BAR_GAP + BAR_WIDTH and height == 120
    bar = px[:, 50 + BAR_GAP:50 + BAR_GAP + BAR_WIDTH].astype(int)
    expected = matplotlib.colormaps["inferno"](np.linspace(1, 0, 120), bytes=True)[:, :3].astype(int)
    tick = round(0.5 * 119)
    rows = np.r_[0:tick, tick + 1:120]
    assert np.abs(bar[rows, 0] - expected[rows]).max() <= 1 and (bar[:, 0] == bar[:, -1]).all()
    assert (bar[tick] == 0).all()  # the threshold's line
    labels = px[:, 50 + BAR_GAP + BAR_WIDTH:]
    assert (labels.max(axis=2) < 100).sum() > 20  # text: "1", "threshold 0.5", "0"


def test_heatmap_vmax_clips_and_constant_map():
    r = np.array([[0.0, 0.5, 1.0, 4.0]])
    cmap = matplotlib.colormaps["inferno"]
    np.testing.assert_array_equal(heatmap_rgb(r, vmax=1.0),
                                  cmap(np.array([[0.0, 0.5, 1.0, 1.0]]), bytes=True)[..., :3])
    flat = heatmap_rgb(np.full((3, 4), 0.0))
    np.testing.assert_array_equal(flat, np.broadcast_to(cmap(0.0, bytes=True)[:3], (3, 4, 3)))


def test_overlay_red_inside_gray_outside(tmp_path):
    h, w = 40, 56
    image = np.tile(np.linspace(0.1, 0.9, w), (h, 1))
    m = square_mask(h, w)
    ov = overlay_rgb(image, m)
    assert ov.shape == (h, w, 3) and ov.dtype == np.uint8
    gray = np.round(image * 255).astype(int)
    o = ov.astype(int)
    redness_in = o[..., 0] - (o[..., 1] + o[..., 2]) / 2
    assert np.all(redness_in[m] > 0)  # the input is gray: redness 0 everywhere
    assert np.all(o[..., 0][m] >= gray[m]) and np.all(o[..., 1][m] < gray[m])
    # The outline: the mask's border pixels are pure red, its interior is only blended.
    assert tuple(ov[10, 20]) == (255, 0, 0) and tuple(ov[15, 15]) == (255, 0, 0)
    assert tuple(ov[15, 22]) != (255, 0, 0)
    for c in range(3):
        np.testing.assert_array_equal(o[..., c][~m], gray[~m])
    mode, size, px = read(save_overlay(image, m, tmp_path / "ov.png"))
    assert size == (w, h) and mode == "RGB"
    np.testing.assert_array_equal(px, ov)


def test_plot_roc_writes_png(tmp_path):
    fpr = np.linspace(0, 1, 50)
    curves = {"l2-AE": (fpr, np.sqrt(fpr), 0.667), "SSIM-AE": (fpr, fpr ** 0.2, float("nan"))}
    path = plot_roc(curves, tmp_path / "roc" / "roc.png", title="test")
    mode, size, px = read(path)
    assert path.stat().st_size > 1000 and size[0] > 200 and size[1] > 200
    assert px.std() > 0  # not a blank canvas


def _row(name, rng, models):
    img = rng.random((32, 48))
    return {"name": name, "image": img, "mask": img > 0.8,
            "models": {m: {"reconstruction": rng.random((32, 48)), "residual": rng.random((32, 48)) * k}
                       for k, m in enumerate(models, start=1)}}


def test_comparison_figure_many_and_missing_models(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row("a", rng, ["l2", "ssim"]), _row("b", rng, ["ssim"])]
    path = comparison_figure(rows, ["l2", "ssim"], tmp_path / "cmp.png")
    _, size, _ = read(path)
    assert path.stat().st_size > 1000
    one = comparison_figure([_row("c", rng, ["ssim"])], ["ssim"], tmp_path / "one.png")
    _, size_one, _ = read(one)
    assert size[0] > size_one[0] and size[1] > size_one[1]  # 6 columns x 2 rows vs 4 x 1


def test_comparison_figure_needs_rows(tmp_path):
    with pytest.raises(ValueError):
        comparison_figure([], ["l2"], tmp_path / "x.png")


def test_markdown_table():
    rows = [{"model": "SSIM-AE", "auc": 0.96543, "n": 3, "note": "a|b"},
            {"model": "l2-AE", "auc": float("nan"), "n": 12},
            {"model": "VAE", "auc": np.float32(0.5), "n": np.int64(7), "note": None}]
    expected = (
        "| model | auc | n | note |\n"
        "| --- | --- | --- | --- |\n"
        "| SSIM-AE | 0.965 | 3 | a\\|b |\n"
        "| l2-AE | n/a | 12 | n/a |\n"
        "| VAE | 0.500 | 7 | n/a |\n"
    )
    assert markdown_table(rows, ["model", "auc", "n", "note"]) == expected
    assert markdown_table(rows[:1], ["auc", "model"], floatfmt=".1%") == (
        "| auc | model |\n| --- | --- |\n| 96.5% | SSIM-AE |\n")


@pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX file modes")
def test_unwritable_path_is_ssimae_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SsimaeError) as e:
        save_mask(square_mask(), blocker / "sub" / "mask.png")
    assert "file" in str(e.value) and "\n" not in str(e.value)


def test_never_uses_pyplot(tmp_path):
    """Rendering works without pyplot (no GUI backend, global state untouched)."""
    import subprocess
    code = ("import sys, numpy as np; from ssimae.reporting.plots import plot_roc, save_heatmap; "
            "plot_roc({'a': (np.r_[0, 1.], np.r_[0, 1.], .5)}, sys.argv[1]); "
            "save_heatmap(np.eye(4), sys.argv[2]); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.png"), str(tmp_path / "h.png")],
                   check=True, timeout=60)
    assert (tmp_path / "r.png").stat().st_size > 0


def test_residual_scale_shared_per_model():
    from ssimae.reporting.plots import _model_ranges
    rows = [{"models": {"l2": {"residual": np.array([[0.1, 0.4]])}, "ssim": {"residual": np.array([[2.0]])}}},
            {"models": {"l2": {"residual": np.array([[0.9, np.nan]])}}}]
    assert _model_ranges(rows, ["l2", "ssim", "vae"]) == {"l2": (0.0, 0.9), "ssim": (0.0, 2.0), "vae": (0.0, 1.0)}
