"""Whole-image inference of the fully convolutional models (inpaint, draem-recon, draem) against
the tiled computation, a single pass and brute-force definitions.

Tolerance (:func:`tolerance`): the same sums computed over differently shaped inputs (another
tile, another kernel blocking) round differently. A float32 sum of K terms in another order
differs by about sqrt(K) u relative to the sum of the terms' magnitudes (Higham, Sec. 4.2;
``tests.helpers.floats``); each convolution adds its own such error and the next layers carry
it on (BatchNorm with the random statistics below scales by at most 1 / sqrt(0.5) = 1.41), so
an output differs by about n_conv * sqrt(K_max) * u, times 2 for the magnitudes of the
activations (order 1: inputs in [0, 1], kaiming-initialised weights), before the final sigmoid,
whose slope is at most 1/4. The width-4 test networks: 18 convolutions (draem: 36), K_max =
288, so 3.6e-5 (draem 7.3e-5); the differences seen are below 1e-6.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from ssimae.core.masks import grid_masks
from ssimae.core.window import Geometry, mirror_index, round_up, tile_spans, whole_image
from ssimae.errors import SsimaeError
from ssimae.inference.detector import Detector
from ssimae.models import get_model
from ssimae.models.draem_net import Draem
from ssimae.models.inpaint import unet_geometry, unet_reach
from ssimae.models.unet import Inpainter, UNet
from ssimae.runs.settings import InferenceSettings
from tests.helpers.floats import UNIT_ROUNDOFF



def tolerance(net: torch.nn.Module) -> float:
    """n_conv * sqrt(K_max) * u * 2 (module docstring): K_max the largest fan-in of the
    network's convolutions."""
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    k = max(c.in_channels * c.kernel_size[0] * c.kernel_size[1] // c.groups for c in convs)
    return len(convs) * math.sqrt(k) * UNIT_ROUNDOFF * 2


FULLY_CONVOLUTIONAL = ("inpaint", "draem-recon", "draem")


def tiny(name: str, seed: int = 0):
    """(model, params, freshly initialised network of width 4) with random BatchNorm statistics
    (so the network is not near-constant)."""
    torch.manual_seed(seed)
    model = get_model(name)
    params = dataclasses.replace(model.Params(), width=4)
    net = model.build(8, params).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model, params, net


@pytest.mark.parametrize("length,tile,margin", [(96, 128, 56), (256, 128, 56), (264, 128, 56), (1024, 200, 96),
                                                (704, 1024, 104), (136, 128, 56), (1000, 120, 8)])
def test_tile_spans_partition_the_axis_and_keep_margins(length, tile, margin):
    spans = tile_spans(length, tile, margin)
    kept = np.zeros(length, int)
    for start, stop, keep_from, keep_to in spans:
        assert 0 <= start <= keep_from < keep_to <= stop <= length and stop - start == min(tile, length)
        kept[keep_from:keep_to] += 1
        # a kept pixel is at least `margin` from every border of its tile that is not the image's
        assert keep_from == 0 or keep_from - start >= margin
        assert keep_to == length or stop - keep_to >= margin
        assert start % 8 == 0
    assert (kept == 1).all()


def test_mirror_padding_is_numpys_symmetric_padding():
    for length, target in [(5, 8), (3, 16), (8, 8), (1, 8)]:
        assert np.array_equal(mirror_index(length, target),
                              np.pad(np.arange(length), (0, target - length), mode="symmetric"))
    seen = []
    image = np.random.default_rng(0).random((37, 50)).astype(np.float32)
    out = whole_image(image, lambda b, m: (seen.append(b), b * 2)[1], Geometry(8, 3), 4096)
    assert np.array_equal(seen[0][0, 0], np.pad(image, ((0, 3), (0, 6)), mode="symmetric"))
    assert np.array_equal(out[0], image * 2)


def counting(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in float64 with every weight 1 and no biases: on an input that is 0 except for
    one pixel set to 1, every activation counts the paths from that pixel (0 where there is
    none), so no ReLU and no max-pool cuts a path and the output changes exactly as far as
    the network's structure lets a pixel be felt."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()
    return net.double().eval()


def farthest_change(net, size: int = 240) -> int:
    """The farthest distance (px, along an axis) between the one input pixel set to 1 in a
    zero image (at each of the 8 places of the 2x2x2x2 pooling cells in turn) and an output
    pixel that differs from the zero image's output."""
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    with torch.no_grad():
        base = net(x)
    farthest, c = 0, size // 2
    for k in range(8):
        y = x.clone()
        y[0, 0, c + k, c + k] = 1.0
        with torch.no_grad():
            changed = (net(y) - base).abs()[0].amax(0) > 0
        rows, cols = torch.nonzero(changed, as_tuple=True)
        farthest = max(farthest, int((rows - c - k).abs().max()), int((cols - c - k).abs().max()))
    return farthest


@pytest.mark.parametrize("skips", [False, True])
def test_the_reach_of_a_unet_is_how_far_a_pixel_is_felt(skips):
    """Brute force on the counting network: the farthest output pixel a changed input pixel
    reaches is exactly the stated reach."""
    geometry = unet_geometry()
    assert farthest_change(counting(UNet(1, 1, 4, skips=skips))) == geometry.reach == unet_reach() == 51
    assert geometry.margin % geometry.multiple == 0 and geometry.margin >= geometry.reach


def test_draem_is_felt_within_the_reach_of_its_two_unets():
    """DRAEM's segmentation U-Net reads the input and its reconstruction U-Net's output: with
    both counting (the reconstruction without its sigmoid, so an unreached pixel stays 0), a
    changed pixel is felt at most the stated reach away, and within a stride of it."""
    model, params, _ = tiny("draem")
    geometry = model.geometry(params)
    draem = Draem(1, 4)
    draem.recon.sigmoid = False
    recon, seg = counting(draem.recon), counting(draem.seg)
    farthest = farthest_change(lambda x: seg(torch.cat([x, recon(x)], 1)), 336)
    assert geometry.reach - geometry.multiple < farthest <= geometry.reach == 2 * unet_reach()


def module_and_masks(name, params, net, height, width):
    """(fn(x, masks) of the whole-image inference, the grid masks of a height x width image or None)."""
    model = get_model(name)
    spec = model.pass_masks(params)
    masks = None if spec is None else torch.from_numpy(grid_masks(height, width, spec["cell_sizes"], spec["sets"],
                                                                  spec["seed"]))
    return model.image_fn(net, params, 0), masks


@pytest.mark.kernels
@pytest.mark.parametrize("name", FULLY_CONVOLUTIONAL)
def test_whole_pass_equals_the_tiled_output_away_from_tile_borders(name):
    """One pass over a 2 x 2 grid of tiles' area against each tile alone (tiles on the
    pooling grid, the masks of inpaint cropped from the image's): equal at every pixel at
    least a margin from the tile's inner borders."""
    model, params, net = tiny(name)
    margin = model.geometry(params).margin
    tile = 2 * margin + 16
    x = torch.rand(1, 1, 2 * tile, 2 * tile)
    fn, masks = module_and_masks(name, params, net, 2 * tile, 2 * tile)
    with torch.no_grad():
        whole = fn(x, masks)
        checked = 0
        for r in (0, tile):
            for c in (0, tile):
                part = fn(x[..., r:r + tile, c:c + tile], None if masks is None else masks[..., r:r + tile, c:c + tile])
                inner = (slice(None), slice(None), slice(margin, tile - margin), slice(margin, tile - margin))
                diff = (part[inner] - whole[..., r:r + tile, c:c + tile][inner]).abs().max()
                assert diff < tolerance(net), (name, r, c, float(diff))
                checked += 1
        # ... and near a tile border they differ (the test can tell tiles from a whole pass)
        edge = fn(x[..., :tile, :tile], None if masks is None else masks[..., :tile, :tile])
        assert (edge[..., tile - 4:, :] - whole[..., tile - 4:tile, :tile]).abs().max() > 1e-3
    assert checked == 4


@pytest.mark.kernels
def test_whole_image_equals_the_sliding_window_at_stride_128_away_from_patch_borders():
    """Through the detector: draem-recon's reconstruction with tiling "whole" equals the paper's
    sliding window of 128 x 128 patches at stride 128 (no overlap) inside each patch."""
    model, params, net = tiny("draem-recon")
    det = Detector(net, model, InferenceSettings(tiling="window", stride=128), params, "cpu")
    image = np.random.default_rng(1).random((256, 384)).astype(np.float32)
    window = det.analyze(image, "l2").reconstruction
    whole = det.with_settings(tiling="whole").analyze(image, "l2").reconstruction
    m = model.geometry(params).margin
    assert m < 64
    for r in (0, 128):
        for c in (0, 128, 256):
            inner = (slice(r + m, r + 128 - m), slice(c + m, c + 128 - m))
            assert np.abs(window[inner] - whole[inner]).max() < tolerance(net)
    assert np.abs(window - whole).max() > 1e-3  # the patches' borders differ


@pytest.mark.kernels
@pytest.mark.parametrize("name", FULLY_CONVOLUTIONAL)
def test_large_tiles_leave_no_seams(name):
    """Tiles of 256 px (2 x 2 or 2 x 3 of them) against one pass over the whole image: the
    same reconstruction everywhere, at the seams included (the masks of inpaint are the image's)."""
    model, params, net = tiny(name)
    geometry = model.geometry(params)
    one = Detector(net, model, InferenceSettings(tiling="whole", tile_size=4096), params, "cpu")
    tiled = one.with_settings(tile_size=256)
    image = np.random.default_rng(2).random((300, 347)).astype(np.float32)
    a = one.analyze(image, "l2").reconstruction
    b = tiled.analyze(image, "l2").reconstruction
    rows = tile_spans(round_up(300, 8), geometry.tile(256), geometry.margin)
    cols = tile_spans(round_up(347, 8), geometry.tile(256), geometry.margin)
    assert len(rows) > 1 and len(cols) > 1
    seams = sorted({s[2] for s in rows[1:]}), sorted({s[2] for s in cols[1:]})
    at_seams = max(max(np.abs(a[r - 2:r + 2] - b[r - 2:r + 2]).max() for r in seams[0]),
                   max(np.abs(a[:, c - 2:c + 2] - b[:, c - 2:c + 2]).max() for c in seams[1]))
    assert at_seams < tolerance(net) and np.abs(a - b).max() < tolerance(net)


def test_inpaint_whole_masks_hide_each_pixel_once_per_cell_size():
    """The whole-image pass is the inpainting of the grid masks: against the pass-by-pass loop."""
    model, params, net = tiny("inpaint")
    x = torch.rand(1, 1, 64, 88)
    fn, masks = module_and_masks("inpaint", params, net, 64, 88)
    assert masks.shape == (len(params.cell_sizes) * params.mask_sets, 1, 64, 88)
    assert torch.equal(masks.reshape(len(params.cell_sizes), params.mask_sets, 64, 88).sum(1),
                       torch.ones(len(params.cell_sizes), 64, 88))
    with torch.no_grad():
        ref = sum(m * net(x * (1 - m)) for m in masks) / len(params.cell_sizes)
        assert (fn(x, masks) - ref).abs().max() < 1e-6


def test_whole_tiling_of_a_paper_model_is_one_clear_line():
    torch.manual_seed(0)
    net = get_model("ssim").build(8, None)
    with pytest.raises(SsimaeError, match="not fully convolutional"):
        Detector(net, "ssim", InferenceSettings(tiling="whole"), device="cpu")
    det = Detector(net, "ssim", InferenceSettings(), device="cpu")
    with pytest.raises(SsimaeError, match="not fully convolutional"):
        det.with_settings(tiling="whole").residual_map(np.zeros((130, 130), np.float32))
    with pytest.raises(SsimaeError, match="--tiling"):
        InferenceSettings(tiling="tiles")
    with pytest.raises(SsimaeError, match="--tile-size"):
        InferenceSettings(tile_size=64)


@pytest.mark.parametrize("tiling", ["window", "whole"])
def test_test_time_cell_sizes_equal_a_model_built_with_them(tiling):
    """inference.model_params changes the passes at test time: the maps equal those of the same
    network given the changed hyperparameters directly."""
    model, params, net = tiny("inpaint")
    image = np.random.default_rng(3).random((140, 150)).astype(np.float32)
    changed = Detector(net, model, InferenceSettings(tiling=tiling, model_params={"cell_sizes": [8], "mask_sets": 2}),
                       params, "cpu")
    direct = Detector(net, model, InferenceSettings(tiling=tiling),
                      dataclasses.replace(params, cell_sizes=(8,), mask_sets=2), "cpu")
    default = Detector(net, model, InferenceSettings(tiling=tiling), params, "cpu")
    got = changed.residual_map(image, "l2")
    assert np.array_equal(got, direct.residual_map(image, "l2"))
    assert not np.array_equal(got, default.residual_map(image, "l2"))
    with pytest.raises(SsimaeError, match="no test-time setting width"):
        Detector(net, model, InferenceSettings(model_params={"width": 8}), params, "cpu")
    with pytest.raises(SsimaeError, match="mask-sets"):
        Detector(net, model, InferenceSettings(model_params={"mask_sets": 1}), params, "cpu")


def test_tiling_is_a_run_setting_and_a_test_time_option(demo_root, tmp_path, capsys):
    """train --tiling/--tile-size are stored in the run; evaluate --tiling/--model-param change
    them for one evaluation (recorded in metrics.json); a paper model refuses whole images in
    one line."""
    import json

    from ssimae.cli.main import main
    from tests.helpers.clicheck import TINY, one_error_line

    run = tmp_path / "inpaint"
    assert main(["train", "--data", str(demo_root), "--model", "inpaint", "--unet-width", "4", "--out", str(run),
                 "--tiling", "whole", "--tile-size", "256", *TINY]) == 0
    stored = json.loads((run / "config.json").read_text())["inference"]
    assert (stored["tiling"], stored["tile_size"], stored["model_params"]) == ("whole", 256, {})
    assert Detector.load(run, "cpu").settings.tiling == "whole"
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev"), "--tiling", "window",
                 "--model-param", "cell_sizes=8", "--model-param", "mask-sets=2", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["tiling"] == "window" and metrics["model_params"] == {"cell_sizes": "8", "mask_sets": "2"}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev2"), "--model-param", "width=8", "--quiet"]) == 2
    one_error_line(capsys, "no test-time setting width")
    paper = tmp_path / "l2"
    capsys.readouterr()
    assert main(["train", "--data", str(demo_root), "--model", "l2", "--out", str(paper), "--tiling", "whole",
                 *TINY]) == 2  # refused before training
    one_error_line(capsys, "not fully convolutional")
    assert not (paper / "model.pt").exists()
    assert main(["train", "--data", str(demo_root), "--model", "l2", "--out", str(paper), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(paper), "--out", str(tmp_path / "ev3"), "--tiling", "whole", "--quiet"]) == 2
    one_error_line(capsys, "not fully convolutional")
    assert not (tmp_path / "ev3").exists()
