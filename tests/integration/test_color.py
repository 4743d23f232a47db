"""Colour images (``--color``, beyond the paper): reading, residuals, sliding window, network,
training, scoring, export and reports, each against an independent reference (Pillow's and
tifffile's pixels, skimage's SSIM with ``channel_axis``, brute-force loops over channels, the
gray code path channel by channel). Gray stays the default and is unchanged.
"""
import csv
import json

import numpy as np
import pytest
import tifffile
import torch
from tests.helpers.clicheck import one_error_line
from PIL import Image
from skimage.metrics import structural_similarity

from ssimae.runs.checkpoint import load_checkpoint
from ssimae.cli.main import main
from ssimae.data.demo_data import (
    COLOR_DEFECT_TYPES,
    apply_crop,
    color_sample,
    draw_crop,
    image_rng,
    load_texture,
    make_color_demo_data,
    tint,
)
from ssimae.inference.detector import Detector
from ssimae.io.images import read_image
from ssimae.models import get_model
from ssimae.models.network import AutoEncoder
from ssimae.training.patches import RandomPatches, augment_patch
from ssimae.core.preprocess import Preprocess
from ssimae.core.residual import l2_residual, msgms_residual, ssim_residual, vae_residual
from ssimae.core.window import sliding_window

COLOR_TINY = ["--epochs", "1", "--patches-per-epoch", "16", "--batch-size", "8", "--latent-dim", "8", "--quiet"]


@pytest.fixture(scope="module")
def color_root(tmp_path_factory):
    return make_color_demo_data(tmp_path_factory.mktemp("color") / "data", size=160, n_train=4, n_test_good=1,
                                n_test_per_type=1)


@pytest.fixture(scope="module")
def color_run(color_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("color-runs") / "ssim"
    assert main(["train", "--data", str(color_root), "--model", "ssim", "--color", "--out", str(run), *COLOR_TINY]) == 0
    return run


# --- reading ----------------------------------------------------------------------------------


def test_read_image_color_keeps_the_files_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.png")
    rgba = np.concatenate([rgb, rng.integers(0, 256, (20, 30, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "c.tif", (rgb.astype(np.uint16) * 257), photometric="rgb")
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")

    expected = rgb.astype(np.float32) / 255
    for name in ("a.png", "b.png", "c.tif"):  # alpha dropped; 16-bit TIFF scaled by 65535
        got = read_image(tmp_path / name, color=True)
        assert got.shape == (20, 30, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-7, err_msg=name)
    g = read_image(tmp_path / "g.png", color=True)  # gray file: three equal channels
    assert g.shape == (20, 30, 3) and np.array_equal(g[..., 0], gray / np.float32(255))
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255  # the default stays gray
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), luma, atol=1e-6)


def test_preprocess_color_reads_resizes_and_pads_channels_alike():
    p = Preprocess(scale=0.5, color=True)
    assert p.channels == 3 and Preprocess().channels == 1 and Preprocess().color is False
    rng = np.random.default_rng(1)
    img = rng.random((90, 100, 3)).astype(np.float32)
    out = p.apply(img)
    assert out.shape == (45, 50, 3)
    for c in range(3):  # each channel resized as the gray path resizes a gray image
        np.testing.assert_allclose(out[..., c], Preprocess(scale=0.5).apply(img[..., c]), atol=1e-6)
    from ssimae.core.preprocess import pad_to_patch
    padded = pad_to_patch(out)
    assert padded.shape == (128, 128, 3)
    for c in range(3):
        assert np.array_equal(padded[..., c], pad_to_patch(out[..., c]))
    with pytest.raises(ValueError, match="reads colour images"):  # a gray array cannot show colour defects
        p.check(img[..., 0])
    with pytest.raises(ValueError, match="gray images"):
        Preprocess().check(img[..., :2])
    assert Preprocess.from_dict(p.to_dict()) == p


# --- residual maps ------------------------------------------------------------------------------


def _pair(shape=(3, 48, 56), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    y = np.clip(x + 0.15 * rng.standard_normal(shape), 0, 1)
    return x, y


def test_ssim_residual_color_is_one_minus_skimages_channel_mean():
    x, y = _pair()
    _, full = structural_similarity(np.moveaxis(x, 0, -1), np.moveaxis(y, 0, -1), channel_axis=-1, full=True,
                                    data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    ref = 1 - full.mean(axis=-1)
    inner = (slice(5, -5), slice(5, -5))  # borders are padded differently (see ssimae.core.ssim_torch)
    for got in (ssim_residual(x, y), ssim_residual(torch.from_numpy(x), torch.from_numpy(y)).numpy()):
        assert got.shape == (48, 56)
        assert np.abs(got[inner] - ref[inner]).max() < 1e-5


def test_l2_vae_and_msgms_residuals_reduce_channels_by_their_definition():
    x, y = _pair(seed=1)
    var = np.random.default_rng(2).random(x.shape) * 0.01
    l2 = np.zeros(x.shape[1:])
    nll = np.zeros(x.shape[1:])
    for c in range(3):  # brute force: a pixel's squared error / NLL is the sum over its channels
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                l2[i, j] += (x[c, i, j] - y[c, i, j]) ** 2
                v = var[c, i, j] + 0.01
                nll[i, j] += 0.5 * np.log(2 * np.pi * v) + (x[c, i, j] - y[c, i, j]) ** 2 / (2 * v)
    np.testing.assert_allclose(l2_residual(x, y), l2, rtol=1e-12)
    np.testing.assert_allclose(vae_residual(x, y, var, 0.01), nll, rtol=1e-12)
    np.testing.assert_allclose(vae_residual(*map(torch.from_numpy, (x, y, var)), 0.01).numpy(), nll, rtol=1e-12)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    per_channel = np.mean([msgms_residual(tx[c], ty[c]).numpy() for c in range(3)], axis=0)
    np.testing.assert_allclose(msgms_residual(tx, ty).numpy(), per_channel, rtol=1e-12)


def test_isoluminant_defect_shows_in_color_not_in_gray(tmp_path):
    """The "hue" stains of the colour data move chroma only: read gray (luma), the defective
    image differs from its clean crop by < 1 gray level on average inside the mask; read in
    colour, by tens of levels. Outside the mask both are the clean crop exactly."""
    tex = load_texture()
    for i in range(3):
        image, mask = color_sample("hue", i, size=160)
        assert image.dtype == np.uint8 and image.shape == (160, 160, 3) and mask.any()
        crop = draw_crop(image_rng(0, "roughened", i), tex.shape, 160, "test")  # the crop color_sample draws
        clean = np.clip(np.rint(tint(apply_crop(tex, crop))), 0, 255).astype(np.uint8)
        Image.fromarray(image, "RGB").save(tmp_path / "d.png")
        Image.fromarray(clean, "RGB").save(tmp_path / "c.png")
        gray = np.abs(read_image(tmp_path / "d.png") - read_image(tmp_path / "c.png")) * 255
        rgb = l2_residual(*(np.moveaxis(read_image(tmp_path / f, color=True), -1, 0) for f in ("d.png", "c.png")))
        assert gray[mask].mean() < 1.0 and gray[~mask].max() == 0
        assert np.sqrt(rgb[mask]).mean() * 255 > 20 and rgb[~mask].max() == 0


# --- sliding window, network, patches, loss ----------------------------------------------------


def test_sliding_window_color_equals_the_gray_window_per_channel():
    rng = np.random.default_rng(3)
    img = rng.random((3, 150, 170)).astype(np.float32)
    gains = np.array([1.0, 2.0, -0.5], np.float32)[None, :, None, None]
    colour = sliding_window(img, lambda b: b * gains + b[:, ::-1] * 0.1, batch_size=7)
    assert colour.shape == (3, 150, 170)
    for c in range(3):  # channel c of the output: gain_c * channel c + 0.1 * channel 2 - c
        gray = sliding_window(img[c], lambda b, c=c: b * gains[0, c, 0, 0], batch_size=5)[0]
        other = sliding_window(img[2 - c], lambda b: b * 0.1, batch_size=5)[0]
        np.testing.assert_allclose(colour[c], gray + other, rtol=1e-5, atol=1e-6)
    t = sliding_window(torch.from_numpy(img), lambda b: b, batch_size=9)  # tensors alike; identity returns the image
    np.testing.assert_allclose(t.numpy(), img, atol=1e-6)


@pytest.mark.parametrize("model", ["ssim", "l2", "vae"])
def test_color_network_has_three_channels_in_and_out_and_table1_elsewhere(model):
    spec = get_model(model)
    gray, colour = spec.build(16, spec.Params()), spec.build(16, spec.Params(), channels=3)
    x = torch.rand(2, 3, 128, 128)
    assert colour(x).shape == (2, 3, 128, 128)
    fn = spec.patch_fn(colour.eval(), spec.Params(), 0)
    with torch.no_grad():
        assert fn(x).shape == (2, 3 * len(spec.outputs), 128, 128)
    gs, cs = gray.state_dict(), colour.state_dict()
    differ = [k for k in gs if gs[k].shape != cs[k].shape]
    first, last = differ[0], differ[-1]  # only the first convolution's input and the last one's output
    assert cs[first].shape[1] == 3 and gs[first].shape[1] == 1
    assert len(differ) == 3  # first weight, last weight and last bias
    assert cs[last].shape[0] == 3


def test_color_patches_are_the_rgb_crops_channels_first():
    rng = np.random.default_rng(4)
    imgs = [rng.random((150, 140, 3)).astype(np.float32)]
    p = RandomPatches(imgs, 6, preprocess=Preprocess(color=True), seed=2, progress=False, augment="dihedral")
    g = RandomPatches([imgs[0][..., 0]], 6, seed=2, progress=False, augment="dihedral")
    for i in range(6):
        item = p[i]
        assert item.shape == (3, 128, 128)
        k, top, left = p.locate(0, i)
        crop = augment_patch(imgs[0][top:top + 128, left:left + 128], "dihedral", np.random.default_rng((2, 0, i, 2)))
        assert np.array_equal(item.numpy(), np.moveaxis(crop, -1, 0))
        assert torch.equal(item[0], g[i][0])  # channel 0 is the gray sampler's patch


def test_l2_loss_sums_the_channels_and_leaves_gray_alone():
    net = AutoEncoder(8, channels=3)
    x = torch.rand(2, 3, 128, 128)
    loss = get_model("l2").loss(net, None, "cpu")(x)
    with torch.no_grad():
        ref = ((net(x) - x) ** 2).sum(dim=1).mean()
    assert torch.allclose(loss.detach(), ref, rtol=1e-6)
    g = AutoEncoder(8)
    xg = torch.rand(2, 1, 128, 128)
    assert torch.equal(get_model("l2").loss(g, None, "cpu")(xg).detach(), torch.mean((g(xg) - xg) ** 2).detach())


# --- end to end ----------------------------------------------------------------------------------


def test_color_run_stores_color_and_scores_rgb(color_run, color_root):
    settings = load_checkpoint(color_run)["settings"]
    assert settings.inference.preprocess.color is True
    det = Detector.load(color_run, "cpu")
    assert det.network.channels == 3
    img = read_image(color_root / "test" / "hue" / "000.png", color=True)
    a = det.analyze(img)
    assert a.reconstruction.shape == (160, 160, 3) and a.residual.shape == (160, 160)
    # the residual is the SSIM of the RGB image and its reconstruction, averaged over channels
    ref = ssim_residual(np.moveaxis(img, -1, 0).astype(np.float64), np.moveaxis(a.reconstruction, -1, 0).astype(np.float64))
    assert np.abs(a.residual - ref).max() < 1e-4
    with pytest.raises(ValueError, match="reads colour images"):  # a gray array cannot show colour defects
        det.analyze(img.mean(axis=2))
    p = det.predict(color_root / "test" / "hue" / "000.png")
    assert p.residual.shape == (160, 160) and p.reconstruction.shape == (160, 160, 3)


def test_gray_run_reads_a_color_array_as_its_luma(trained_run):
    det = Detector.load(trained_run, "cpu")  # as a gray run reads a colour file (ssimae.io.images)
    rgb = np.zeros((130, 130, 3), np.float32)
    rgb[..., 1] = 1.0
    np.testing.assert_array_equal(det.analyze(rgb).residual, det.analyze(np.full((130, 130), 0.587, np.float32)).residual)
    with pytest.raises(ValueError, match="gray images"):
        det.analyze(np.zeros((130, 130, 2), np.float32))


def test_color_evaluate_and_predict_write_rgb_reports(color_run, color_root, tmp_path):
    ev = tmp_path / "eval"
    assert main(["evaluate", str(color_run), "--data", str(color_root), "--out", str(ev), "--quiet"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(COLOR_DEFECT_TYPES) <= set(metrics["per_type"])
    thumbs = sorted((ev / "thumbs").rglob("*_input.png"))
    assert thumbs and Image.open(thumbs[0]).mode == "RGB"
    pr = tmp_path / "pred"
    assert main(["predict", str(color_run), str(color_root / "test"), "--out", str(pr), "--quiet"]) == 0
    rows = list(csv.DictReader((pr / "predictions.csv").open()))
    assert len(rows) == 1 + len(COLOR_DEFECT_TYPES)
    src = np.asarray(Image.open(color_root / "test" / "cut" / "000.png"))
    mask = np.asarray(Image.open(pr / "cut" / "000_mask.png")) > 0
    assert (pr / "report.html").exists() and Image.open(next((pr / "thumbs").rglob("*_input.png"))).mode == "RGB"
    cut_overlay = np.asarray(Image.open(pr / "cut" / "000_overlay.png"))
    assert cut_overlay.shape == src.shape
    assert np.array_equal(cut_overlay[~mask], src[~mask])  # outside the mask: the RGB input itself


def test_color_compare_and_export_parity(color_root, color_run, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(color_root), "--models", "l2", "--color", "--out", str(out),
                 *COLOR_TINY]) == 0
    assert (out / "examples.png").exists()
    assert load_checkpoint(next(out.rglob("model.pt")))["settings"].inference.preprocess.color
    pytest.importorskip("onnxruntime", reason="the ONNX runtime tests need onnxruntime (pip install 'ssimae[onnx]')")
    pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install 'ssimae[onnx]')")
    from ssimae.runtime import OnnxDetector

    assert main(["export", str(color_run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    onnx_det, torch_det = OnnxDetector.load(tmp_path / "x", threads=2), Detector.load(color_run, "cpu")
    img = read_image(color_root / "test" / "hue" / "000.png", color=True)
    a, b = torch_det.analyze(img), onnx_det.analyze(img)
    assert np.abs(a.residual - b.residual).max() < 1e-4
    assert np.abs(a.reconstruction - b.reconstruction).max() < 1e-4


def test_color_cannot_be_switched_on_resume(color_root, tmp_path, capsys):
    run = tmp_path / "gray"
    assert main(["train", "--data", str(color_root), "--out", str(run), *COLOR_TINY, "--max-minutes", "0"]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(color_root), "--out", str(run), *COLOR_TINY, "--color", "--resume"]) == 2
    one_error_line(capsys, "--color", "--resume")


def test_config_color_survives_a_scale_option(tmp_path):
    from ssimae.runs.config import override
    from ssimae.core.preprocess import Preprocess as P
    from ssimae.runs.settings import InferenceSettings, RunSettings

    file_run = RunSettings(inference=InferenceSettings(preprocess=P(size=(256, 256), color=True)))
    cli_run = RunSettings(inference=InferenceSettings(preprocess=P(scale=0.5)))
    got = override(file_run, cli_run, {"scale"}, {}).inference.preprocess
    assert got == P(scale=0.5, color=True)
    got = override(RunSettings(), RunSettings(inference=InferenceSettings(preprocess=P(color=True))), {"color"}, {})
    assert got.inference.preprocess.color


def test_make_demo_data_color_cli(tmp_path, capsys):
    assert main(["make-demo-data", str(tmp_path / "c"), "--color"]) == 0
    assert "colour demo dataset" in capsys.readouterr().out
    img = Image.open(tmp_path / "c" / "test" / "hue" / "000.png")
    assert img.mode == "RGB" and img.size == (256, 256)
    assert sorted(p.name for p in (tmp_path / "c" / "test").iterdir()) == ["cut", "good", "hue"]
    # the calibration images: the gray demo's (defect-free crops of the test region), tinted
    cal = sorted((tmp_path / "c" / "calibration" / "good").iterdir())
    assert [p.name for p in cal] == [f"{i:03d}.png" for i in range(20)]
    tex = load_texture()
    for i in (0, 19):
        crop = draw_crop(image_rng(0, "calibration", i), tex.shape, 256, "test")
        clean = np.clip(np.rint(tint(apply_crop(tex, crop))), 0, 255).astype(np.uint8)
        assert np.array_equal(np.asarray(Image.open(cal[i])), clean)
    assert main(["make-demo-data", str(tmp_path / "c"), "--color"]) == 2  # not empty: refused
    one_error_line(capsys, "not an empty folder")


def test_color_vae_export_parity(color_root, tmp_path):
    """The VAE's colour maps (NLL summed over channels) from the ONNX runtime, with its numpy
    copy of torch's noise, equal the torch detector's."""
    pytest.importorskip("onnxruntime", reason="the ONNX runtime tests need onnxruntime (pip install 'ssimae[onnx]')")
    pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install 'ssimae[onnx]')")
    from ssimae.runtime import OnnxDetector

    run = tmp_path / "vae"
    assert main(["train", "--data", str(color_root), "--model", "vae", "--color", "--out", str(run), *COLOR_TINY]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "x")]) == 0
    img = read_image(color_root / "test" / "hue" / "000.png", color=True)
    a, b = Detector.load(run, "cpu").analyze(img), OnnxDetector.load(tmp_path / "x", threads=2).analyze(img)
    assert a.reconstruction.shape == (160, 160, 3)
    assert np.abs(a.residual - b.residual).max() < 1e-3 * max(1.0, np.abs(a.residual).max())


def test_color_with_scale_and_calibrate(color_root, tmp_path, capsys):
    """A colour run at image scale 0.75: maps and the RGB reconstruction come back at the
    input's resolution, and `ssimae calibrate` on colour images stores a new threshold."""
    run = tmp_path / "l2"
    assert main(["train", "--data", str(color_root), "--model", "l2", "--color", "--scale", "0.75", "--out", str(run),
                 *COLOR_TINY]) == 0
    det = Detector.load(run, "cpu")
    img = read_image(color_root / "test" / "cut" / "000.png", color=True)
    a = det.analyze(img)
    assert a.reconstruction.shape == (160, 160, 3) and a.residual.shape == (160, 160)
    before = det.threshold
    capsys.readouterr()
    assert main(["calibrate", str(run), "--good", str(color_root / "test" / "good"), "--threshold-rule", "quantile",
                 "--quantile", "1.0"]) == 0
    after = load_checkpoint(run)["settings"].inference
    assert after.threshold_rule == "quantile" and after.threshold_history[-1]["previous_threshold"] == before
    # the quantile-1 rule's threshold is the largest opened residual of those images, read in colour
    from ssimae.core.morphology import gray_opening
    good = [read_image(p, color=True) for p in sorted((color_root / "test" / "good").iterdir())]
    expected = max(float(gray_opening(det.residual_map(g), det.opening_diameter).max()) for g in good)
    assert after.threshold == pytest.approx(expected, rel=1e-5)
