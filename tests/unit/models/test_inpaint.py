"""The inpainting model (beyond the paper): masks, the composed reconstruction, MSGMS in numpy,
against brute-force definitions and the torch implementations."""
import numpy as np
import pytest
import torch
from tests.helpers.floats import maps_close

from ssimae.models import get_model
from ssimae.core.msgms_torch import msgms_map
from ssimae.models.inpaint import InpaintParams
from ssimae.models.unet import (
    Inpainter,
    UNet,
    cell_assignment,
    set_masks,
    inference_masks,
    unet_flops,
)
from ssimae.core.msgms import msgms_residual_numpy, upsample_bilinear
from ssimae.core.residual import msgms_residual
from ssimae.errors import SsimaeError


@pytest.mark.parametrize("h, w, cell, sets", [(128, 128, 2, 3), (128, 128, 16, 3), (37, 50, 8, 4), (9, 5, 4, 2)])
def test_each_pixel_is_hidden_in_exactly_one_pass_and_cells_stay_whole(h, w, cell, sets):
    assign = cell_assignment(h, w, cell, sets, torch.Generator().manual_seed(1))
    masks = set_masks(assign, sets).numpy()
    # brute force: every pixel in exactly one of the sets' masks ...
    for r in range(h):
        for c in range(w):
            assert sum(masks[s, r, c] for s in range(sets)) == 1
    # ... and every grid cell (partial cells at the borders) lies wholly in one set
    for r0 in range(0, h, cell):
        for c0 in range(0, w, cell):
            assert len(np.unique(assign[r0:r0 + cell, c0:c0 + cell].numpy())) == 1
    counts = [int(m.sum()) for m in masks]
    assert sum(counts) == h * w


def test_cells_are_dealt_evenly_and_masks_depend_only_on_the_seed():
    assign = cell_assignment(128, 128, 4, 3, torch.Generator().manual_seed(0))
    cells = np.bincount(assign[::4, ::4].numpy().ravel(), minlength=3)
    assert cells.max() - cells.min() <= 1
    a = inference_masks(128, (2, 8), 3, seed=5)
    assert a.shape == (6, 1, 128, 128) and torch.equal(a, inference_masks(128, (2, 8), 3, seed=5))
    assert not torch.equal(a, inference_masks(128, (2, 8), 3, seed=6))


@pytest.mark.kernels  # all passes in one batch against one pass at a time: tests/helpers/floats.py
def test_inpainter_equals_the_pass_by_pass_loop():
    torch.manual_seed(0)
    net = UNet(1, 1, width=4).eval()
    masks = inference_masks(32, (2, 4), 3, seed=0)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        got = Inpainter(net, masks, 3, False)(x)
        ref = torch.zeros_like(x)
        for k in range(2):  # brute force: each cell size, each hidden set, one pass at a time
            for s in range(3):
                m = masks[k * 3 + s]
                ref += m * net(x * (1 - m)) / 2
    maps_close(got.numpy(), ref.numpy())  # another batch composition: floats.py's rounding


def test_a_pixel_never_sees_itself():
    """The composed reconstruction of a pixel does not change when only that pixel's value
    changes... up to what the other passes (where it was visible) contribute: none, since each
    pixel is taken from the pass that hid it."""
    torch.manual_seed(0)
    net = UNet(1, 1, width=4).eval()
    inp = Inpainter(net, inference_masks(32, (4,), 3, seed=0), 3, False)
    x = torch.rand(1, 1, 32, 32)
    y = x.clone()
    y[0, 0, 10, 13] = 1 - y[0, 0, 10, 13]
    with torch.no_grad():
        a, b = inp(x), inp(y)
    assert a[0, 0, 10, 13] == b[0, 0, 10, 13]
    assert (a - b).abs().max() > 0  # it does change its neighbours' reconstructions


@pytest.mark.parametrize("shape", [(64, 80), (37, 129), (3, 50, 61), (9, 9), (130, 7)])
def test_numpy_msgms_equals_torch_msgms(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    y = np.clip(x + 0.1 * rng.standard_normal(shape), 0, 1)
    ref = msgms_residual(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert np.allclose(msgms_residual_numpy(x, y), ref, atol=1e-7)


def test_bilinear_upsampling_equals_torch():
    x = np.random.default_rng(1).random((7, 10))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[None, None], size=(29, 41), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    assert np.allclose(upsample_bilinear(x, (29, 41)), ref, atol=1e-12)


def test_batched_msgms_loss_map_equals_the_residual():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.random((2, 1, 40, 48)))
    y = torch.from_numpy(rng.random((2, 1, 40, 48)))
    got = 1 - msgms_map(y, x)
    for i in range(2):  # against the numpy twin, image by image
        ref = msgms_residual_numpy(x[i, 0].numpy(), y[i, 0].numpy())
        assert np.allclose(got[i, 0].numpy(), ref, atol=1e-7)
    eps = 1 - msgms_map(y, x, eps=1e-12)  # the training form: differentiable, the same to 1e-5
    assert torch.allclose(eps, got, atol=1e-5)


def test_loss_trains_and_flops_count_matches_a_hand_count():
    model = get_model("inpaint")
    params = InpaintParams(width=4, cell_sizes=(2, 4))
    net = model.build(100, params)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x = torch.rand(4, 1, 32, 32)
    torch.manual_seed(0)
    first = model.loss(net, params, "cpu")(x)
    for _ in range(20):
        opt.zero_grad()
        loss = model.loss(net, params, "cpu")(x)
        loss.backward()
        opt.step()
    assert loss.item() < first.item()
    # by hand, width 1, one level at 8x8 from 1 channel: 2 * 64 * 9 * (1*1 + 1*1) + head 2 * 64 * 1
    assert unet_flops(8, 1, 1, 1) == 2 * 64 * 9 * 2 + 2 * 64


@pytest.mark.parametrize("bad", [dict(cell_sizes=(0,)), dict(cell_sizes=()), dict(mask_sets=1), dict(width=0)])
def test_bad_params_are_one_clear_line(bad):
    with pytest.raises(SsimaeError):
        InpaintParams(**bad)


def test_cell_sizes_parse_from_the_command_line_form():
    assert InpaintParams(cell_sizes="4,8").cell_sizes == (4, 8)


def conv_flops_by_hooks(net: torch.nn.Module, shape) -> int:
    """2 x multiply-adds of every convolution and transposed convolution, counted on a real
    forward pass (an independent reference for :func:`unet_flops`)."""
    total = []

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        n = out.numel() if isinstance(mod, torch.nn.Conv2d) else inp[0].numel() // mod.in_channels * mod.out_channels
        total.append(2 * k * n if isinstance(mod, torch.nn.Conv2d) else 2 * n * k)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                      torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        net.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("size, width, skips", [(128, 16, True), (64, 8, True), (128, 16, False)])
def test_unet_flops_count_equals_a_count_by_hooks(size, width, skips):
    assert unet_flops(size, 1, width, skips=skips) == conv_flops_by_hooks(UNet(1, 1, width, skips=skips),
                                                                          (1, 1, size, size))
