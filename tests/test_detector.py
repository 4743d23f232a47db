"""The inference API: residual maps at the input's resolution, small images, resizing."""
import numpy as np
import torch
from skimage.transform import resize

from ssimae.detector import Detector
from ssimae.model import AutoEncoder
from ssimae.residual import residual_map
from ssimae.ssim import ssim_options
from ssimae.window import sliding_window


def detector(preprocess=None, kind="ssim"):
    torch.manual_seed(0)
    cfg = {"model": kind, "latent_dim": 8, "preprocess": preprocess or {}, "ssim": ssim_options(), "stride": 30,
           "opening_diameter": 4}
    return Detector(AutoEncoder(8), cfg, threshold=0.5)


def test_residual_equals_window_then_residual():
    det = detector()
    img = np.random.default_rng(0).random((140, 200)).astype(np.float32)
    x = torch.from_numpy(img)
    with torch.no_grad():
        ref = residual_map("ssim", x, sliding_window(x, det.model)).numpy()
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
        ref = residual_map("ssim", x, sliding_window(x, det.model)).numpy()[:60, :100]
    assert np.allclose(res, ref, atol=1e-6)
    assert det.segment(img).shape == img.shape and det.segment(img).dtype == bool


def test_resized_run_maps_back_to_input_resolution():
    det = detector({"size": [128, 128], "scale": None}, kind="l2")
    img = np.random.default_rng(2).random((256, 256)).astype(np.float32)
    recon, maps = det.analyze_many(img, ("l2",))
    assert maps["l2"].shape == recon.shape == (256, 256)
    small = resize(img, (128, 128), order=1, mode="reflect", anti_aliasing=True, preserve_range=True)
    with torch.no_grad():
        rec_small = det.model(torch.from_numpy(small.astype(np.float32))[None, None])[0, 0].numpy()
    ref = resize((small - rec_small) ** 2, (256, 256), order=1, mode="edge", preserve_range=True)
    assert np.allclose(maps["l2"], ref, atol=1e-5)
