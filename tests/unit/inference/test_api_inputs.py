"""The Python API takes what users have: paths, numpy arrays (uint8 or floats in [0, 1],
gray, RGB or RGBA) and Pillow images all go through the conversion of files (reference:
the same image written as a PNG file and read by ssimae); a colour run refuses a gray
array in one line; ``Prediction.to_dict()`` is the predictions.jsonl row; ``repr`` names
model, residual, thresholds and engine."""
import json

import numpy as np
import pytest
from PIL import Image

from ssimae.cli.main import main
from ssimae.core.preprocess import Preprocess
from ssimae.errors import BadArray
from ssimae.inference.detector import Detector
from ssimae.io.images import read_image


@pytest.fixture(scope="module")
def rgba(demo_root):
    """An RGBA uint8 image made from a demo image (colour added, alpha random)."""
    gray = np.asarray(Image.open(sorted((demo_root / "test").rglob("*.png"))[-1]).convert("L"))
    rng = np.random.default_rng(0)
    out = np.stack([gray, np.roll(gray, 7, axis=1), 255 - gray, rng.integers(0, 256, gray.shape)], axis=2)
    return out.astype(np.uint8)


def test_gray_run_converts_rgb_rgba_arrays_and_pil_images_as_files(rgba, tmp_path):
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "rgb.png")
    ref = read_image(tmp_path / "rgb.png")  # a gray run reads an RGB file as its luma
    p = Preprocess()
    for given in (rgba[..., :3], rgba, Image.fromarray(rgba[..., :3], "RGB"), Image.fromarray(rgba, "RGBA"),
                  tmp_path / "rgb.png"):
        assert np.array_equal(p.convert(given), ref), type(given)
    # floats in [0, 1]: the same luma of values rounded to float32 (a few ulp of 1.0 apart)
    np.testing.assert_allclose(p.convert(rgba[..., :3] / np.float32(255)), ref, rtol=0, atol=4 * 2.0 ** -24)


def test_detector_scores_a_pil_image_and_an_rgb_array_as_the_file(trained_run, rgba, tmp_path):
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "rgb.png")
    det = Detector.load(trained_run, "cpu")
    ref, *got = det.predict_many([tmp_path / "rgb.png", rgba, Image.fromarray(rgba, "RGBA")])
    for p in got:
        assert p.score == ref.score and np.array_equal(p.residual, ref.residual)


def test_colour_run_refuses_a_gray_array_or_image_in_one_line(rgba):
    p = Preprocess(color=True)
    assert p.convert(rgba).shape == rgba.shape[:2] + (3,)  # RGBA: alpha dropped
    for gray in (rgba[..., 0], Image.fromarray(rgba[..., 0], "L")):
        with pytest.raises(BadArray, match="this run reads colour images") as err:
            p.convert(gray)
        assert "\n" not in str(err.value)


def test_to_dict_is_the_jsonl_row_and_repr_names_what_decides(trained_run, demo_root, tmp_path):
    image = sorted((demo_root / "test").rglob("*.png"))[0]
    assert main(["predict", str(trained_run), str(image), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    row = json.loads((tmp_path / "p" / "predictions.jsonl").read_text())
    det = Detector.load(trained_run, "cpu")
    got = det.predict(image).to_dict(row["path"], row["source"])
    assert got == {k: v for k, v in row.items() if k not in ("label", "outcome")}
    s = det.settings
    assert repr(det) == (f"Detector(model='ssim' (SSIM-AE), residual='ssim', image_threshold={s.image_threshold:.6g}, "
                         f"pixel_threshold={s.threshold:.6g}, engine='torch')")


def test_onnx_detector_repr(trained_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from ssimae.runtime import OnnxDetector

    assert main(["export", str(trained_run), "--out", str(tmp_path / "x")]) == 0
    det, s = OnnxDetector.load(tmp_path / "x"), Detector.load(trained_run, "cpu").settings
    assert repr(det) == (f"OnnxDetector(model='ssim' (SSIM-AE), residual='ssim', "
                         f"image_threshold={s.image_threshold:.6g}, pixel_threshold={s.threshold:.6g}, engine='onnx')")
