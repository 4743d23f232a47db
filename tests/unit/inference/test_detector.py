"""The inference API: residual maps at the input's resolution, small images, resizing."""
import pytest
import numpy as np
import torch
from skimage.transform import resize

from ssimae.inference.detector import Detector
from ssimae.models.network import AutoEncoder
from ssimae.core.preprocess import Preprocess
from ssimae.core.residual import ResidualContext, residual_map
from ssimae.runs.settings import InferenceSettings
from ssimae.core.window import sliding_window


def detector(preprocess=Preprocess(), model="ssim"):
    torch.manual_seed(0)
    return Detector(AutoEncoder(8), model, InferenceSettings(preprocess=preprocess, threshold=0.5))


def window_residual(det, name, x):
    """The residual of the sliding-window reconstruction, computed directly."""
    out = {"recon": sliding_window(x, det.network)[0]}
    return residual_map(name, x, out, ResidualContext(det.settings)).numpy()


def test_residual_equals_window_then_residual():
    det = detector()
    img = np.random.default_rng(0).random((140, 200)).astype(np.float32)
    x = torch.from_numpy(img)
    with torch.no_grad():
        ref = window_residual(det, "ssim", x)
    assert np.allclose(det.residual_map(img), ref, atol=1e-6)
    recon, maps = det.analyze_many(img, ("ssim", "l2"))
    assert np.allclose(maps["l2"], (img - recon) ** 2, atol=1e-6)


def test_small_image_is_mirror_padded_and_cropped_back():
    det = detector()
    img = np.random.default_rng(1).random((60, 100)).astype(np.float32)
    res = det.residual_map(img)
    assert res.shape == img.shape
    padded = np.pad(img, ((0, 68), (0, 28)), mode="symmetric")  # reference: numpy's mirror padding
    x = torch.from_numpy(padded)
    with torch.no_grad():
        ref = window_residual(det, "ssim", x)[:60, :100]
    assert np.allclose(res, ref, atol=1e-6)
    assert det.segment(img).shape == img.shape and det.segment(img).dtype == bool


def test_resized_run_maps_back_to_input_resolution():
    det = detector(Preprocess(size=(128, 128)), model="l2")
    img = np.random.default_rng(2).random((256, 256)).astype(np.float32)
    recon, maps = det.analyze_many(img, ("l2",))
    assert maps["l2"].shape == recon.shape == (256, 256)
    small = resize(img, (128, 128), order=1, mode="reflect", anti_aliasing=True, preserve_range=True)
    with torch.no_grad():
        rec_small = det.network(torch.from_numpy(small.astype(np.float32))[None, None])[0, 0].numpy()
    ref = resize((small - rec_small) ** 2, (256, 256), order=1, mode="edge", preserve_range=True)
    assert np.allclose(maps["l2"], ref, atol=1e-5)


@pytest.mark.parametrize("name", ["ssim", "inpaint"])
def test_channels_last_and_compile_options_give_the_same_maps(name):
    """TorchOptions change only how torch runs the network: the maps equal the default's to
    float rounding (outputs in [0, 1]; 1e-5 covers reordered float32 sums)."""
    import dataclasses

    from ssimae.inference.detector import TorchOptions
    from ssimae.models import get_model
    from ssimae.runs.settings import InferenceSettings

    torch.manual_seed(0)
    model = get_model(name)
    params = dataclasses.replace(model.Params(), width=4) if name == "inpaint" else model.Params()
    net = model.build(8, params)
    image = np.random.default_rng(0).random((140, 150)).astype(np.float32)
    ref = Detector(net, model, InferenceSettings(), params, "cpu").residual_map(image, "l2")
    for options in (TorchOptions(channels_last=True), TorchOptions(compile=True)):
        det = Detector(net, model, InferenceSettings(), params, "cpu", options)
        assert np.abs(det.residual_map(image, "l2") - ref).max() < 1e-5, options
        assert det.network is net  # the loaded network is left as it is
