"""Reading images and masks: values against what was written, and one test per bad file."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from ssimae.errors import SsimaeError
from ssimae.io.images import image_size, is_image_file, mask_is_binary, read_image, read_mask, read_mask_checked

RNG = np.random.default_rng(0)


def _u8(h=20, w=30, c=None):
    shape = (h, w) if c is None else (h, w, c)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _png_bytes(arr, tmp_path, name="a.png"):
    path = tmp_path / name
    Image.fromarray(arr).save(path)
    return path


def test_is_image_file():
    assert is_image_file("a.PNG") and is_image_file("x/b.jpeg") and is_image_file("c.TiFf") and is_image_file("d.bmp")
    assert not is_image_file("notes.txt")
    assert not is_image_file(".hidden.png")
    assert not is_image_file("._a.jpg")


def test_8bit_png_values(tmp_path):
    arr = _u8()
    img = read_image(_png_bytes(arr, tmp_path))
    assert img.dtype == np.float32 and img.shape == arr.shape
    np.testing.assert_allclose(img, arr / 255.0, atol=1e-7)


def test_16bit_png_values(tmp_path):
    arr = RNG.integers(0, 65536, (17, 23), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    path = tmp_path / "a16.png"
    Image.fromarray(arr).save(path)
    img = read_image(path)
    np.testing.assert_allclose(img, arr / 65535.0, atol=1e-7)
    assert img.min() == 0.0 and img.max() == 1.0


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255.0), (np.uint16, 65535.0)])
def test_tiff_integer_values(tmp_path, dtype, scale):
    arr = RNG.integers(0, int(scale) + 1, (19, 21)).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", arr)
    np.testing.assert_allclose(read_image(tmp_path / "a.tif"), arr / scale, atol=1e-7)


def test_float_tiff_in_unit_range_is_kept(tmp_path):
    arr = RNG.random((12, 13)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", arr)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), arr)


def test_float_tiff_outside_unit_range_is_min_max_scaled(tmp_path):
    arr = (RNG.random((12, 13)) * 300 - 50).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    ref = (arr.astype(np.float64) - arr.min()) / (arr.max() - arr.min())
    np.testing.assert_allclose(read_image(tmp_path / "f.tif"), ref, atol=1e-6)


def test_float_tiff_with_nan_is_an_error(tmp_path):
    arr = np.full((8, 8), 2.0, np.float32)
    arr[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "n.tif", arr)
    with pytest.raises(SsimaeError, match="NaN"):
        read_image(tmp_path / "n.tif")


def test_rgb_tiff_and_lzw_tiff(tmp_path):
    rgb = _u8(c=3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    ref = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    np.testing.assert_allclose(read_image(tmp_path / "rgb.tif"), ref, atol=1e-6)
    gray = _u8()  # LZW needs imagecodecs in tifffile: read through the Pillow fallback
    Image.fromarray(gray).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_allclose(read_image(tmp_path / "lzw.tif"), gray / 255.0, atol=1e-7)


def test_tiff_stack_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((10, 16, 16), np.uint8))
    with pytest.raises(SsimaeError, match="stack") as err:
        read_image(tmp_path / "stack.tif")
    assert "stack.tif" in str(err.value)


def test_rgb_png_is_luma_like_pil(tmp_path):
    rgb = _u8(c=3)
    img = read_image(_png_bytes(rgb, tmp_path))
    pil_l = np.asarray(Image.fromarray(rgb).convert("L")) / 255.0  # rounded to 8 bit
    np.testing.assert_allclose(img, pil_l, atol=0.5 / 255 + 1e-6)


def test_rgba_alpha_is_dropped(tmp_path):
    rgba = _u8(c=4)
    rgba[..., 3] = RNG.integers(0, 256, rgba.shape[:2])
    a = read_image(_png_bytes(rgba, tmp_path, "rgba.png"))
    b = read_image(_png_bytes(np.ascontiguousarray(rgba[..., :3]), tmp_path, "rgb.png"))
    np.testing.assert_array_equal(a, b)


def test_gray_alpha_and_palette_and_1bit(tmp_path):
    la = _u8(c=2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), la[..., 0] / 255.0, atol=1e-7)
    rgb = _u8(c=3)
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    ref = read_image(_png_bytes(np.asarray(pal.convert("RGB")), tmp_path, "ref.png"))
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), ref, atol=1e-7)
    bits = RNG.random((9, 11)) > 0.5
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), bits.astype(np.float32))


def test_jpeg_and_bmp(tmp_path):
    arr = _u8()
    Image.fromarray(arr).save(tmp_path / "a.bmp")
    np.testing.assert_allclose(read_image(tmp_path / "a.bmp"), arr / 255.0, atol=1e-7)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    img = read_image(tmp_path / "a.jpg")
    assert img.shape == arr.shape and np.abs(img - arr / 255.0).mean() < 0.05


def test_truncated_png(tmp_path):
    data = (_png_bytes(_u8(64, 64), tmp_path)).read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SsimaeError, match="truncated or corrupt") as err:
        read_image(tmp_path / "t.png")
    assert str(err.value).startswith(str(tmp_path / "t.png") + ": ")
    assert "\n" not in str(err.value)


def test_png_cut_after_pixel_data(tmp_path):
    data = (_png_bytes(_u8(64, 64), tmp_path)).read_bytes()
    (tmp_path / "t.png").write_bytes(data[:-12])  # IEND chunk missing: Pillow's load() accepts it
    with pytest.raises(SsimaeError, match="truncated or corrupt"):
        read_image(tmp_path / "t.png")


def test_truncated_jpeg(tmp_path):
    Image.fromarray(_u8(64, 64, 3)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SsimaeError, match="truncated"):
        read_image(tmp_path / "t.jpg")


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(SsimaeError, match="empty file"):
        read_image(tmp_path / "z.png")
    with pytest.raises(SsimaeError, match="empty file"):
        image_size(tmp_path / "z.png")


def test_text_file_named_png(tmp_path):
    (tmp_path / "x.png").write_text("hello, not an image\n")
    with pytest.raises(SsimaeError, match="not an image") as err:
        read_image(tmp_path / "x.png")
    assert "x.png" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SsimaeError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_image_size_reads_header(tmp_path):
    Image.fromarray(_u8(33, 44)).save(tmp_path / "a.png")
    Image.fromarray(_u8(35, 17, 3)).save(tmp_path / "b.jpg")
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((21, 22, 3), np.uint8), photometric="rgb")
    assert image_size(tmp_path / "a.png") == (33, 44)
    assert image_size(tmp_path / "b.jpg") == (35, 17)
    assert image_size(tmp_path / "c.tif") == (21, 22)


def test_mask_threshold_8bit(tmp_path):
    arr = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(read_mask(_png_bytes(arr, tmp_path)), [[False, False, True, True]])


def test_mask_threshold_16bit_and_float(tmp_path):
    arr = np.array([[0, 32767, 32768, 65535]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m16.png"), [[False, False, True, True]])
    tifffile.imwrite(tmp_path / "mf.tif", np.array([[0.0, 0.5, 0.51, 1.0]], np.float32))
    np.testing.assert_array_equal(read_mask(tmp_path / "mf.tif"), [[False, False, True, True]])


def test_rgb_mask_is_converted_to_gray(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = 255  # white: defect
    rgb[0, 1] = (255, 0, 0)  # red: luma 76 -> not a defect
    rgb[1, 2] = (0, 255, 0)  # green: luma 150 -> defect
    mask, binary = read_mask_checked(_png_bytes(rgb, tmp_path))
    np.testing.assert_array_equal(mask, [[True, False, False], [False, False, True]])
    assert not binary


def test_mask_binary_flag(tmp_path):
    hard = np.where(RNG.random((10, 10)) > 0.5, 255, 0).astype(np.uint8)
    soft = hard.copy()
    soft[0, 0] = 200
    assert read_mask_checked(_png_bytes(hard, tmp_path, "h.png"))[1] is True
    assert read_mask_checked(_png_bytes(soft, tmp_path, "s.png"))[1] is False
    assert mask_is_binary(np.array([0.0, 1.0])) and not mask_is_binary(np.array([0.0, 0.5]))


def test_label_mask_with_values_0_and_1(tmp_path):
    arr = np.array([[0, 1, 1, 0]], np.uint8)
    mask, binary = read_mask_checked(_png_bytes(arr, tmp_path))
    np.testing.assert_array_equal(mask, [[False, True, True, False]])
    assert binary


def test_mask_of_wrong_size(tmp_path):
    path = _png_bytes(np.zeros((100, 120), np.uint8), tmp_path, "m.png")
    with pytest.raises(SsimaeError) as err:
        read_mask(path, shape=(128, 128))
    msg = str(err.value)
    assert msg.startswith(str(path)) and "120x100" in msg and "128x128" in msg and "WxH" in msg
    assert read_mask(path, shape=(100, 120)).shape == (100, 120)


def _files_of_every_kind(tmp_path) -> list:
    """Files that exercise each rule of the decoder: bit depths, colour, palette, TIFF variants."""
    rng = np.random.default_rng(0)
    gray, rgb = (rng.random((30, 40)) * 255).astype(np.uint8), (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    files = {"g.png": gray, "c.png": rgb, "g.jpg": gray, "c.bmp": rgb, "rgba.png": np.dstack([rgb, gray])}
    for name, arr in files.items():
        Image.fromarray(arr).save(tmp_path / name)
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.tif")
    Image.fromarray(gray).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    tifffile.imwrite(tmp_path / "g16.tif", (rng.random((30, 40)) * 65535).astype(np.uint16))
    tifffile.imwrite(tmp_path / "f.tif", (rng.random((30, 40)) * 3).astype(np.float32))
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    Image.fromarray((rng.random((30, 40)) * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    return sorted(p for p in tmp_path.iterdir() if p.is_file())


def test_decode_image_of_bytes_equals_read_image(tmp_path):
    from ssimae.io.images import decode_image

    for path in _files_of_every_kind(tmp_path):
        for color in (False, True):
            assert np.array_equal(decode_image(path.read_bytes(), color), read_image(path, color)), (path.name, color)


def test_decode_image_errors_name_no_file_and_have_kinds(tmp_path):
    from ssimae.io.images import ImageTooLargeError, NotAnImageError, decode_image

    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((30, 40), np.uint16))
    data = (tmp_path / "a.png").read_bytes()
    cases = [(b"plain text", NotAnImageError, "not an image"), (b"", SsimaeError, "empty image"),
             (data[:60], SsimaeError, "truncated or corrupt")]
    for blob, kind, words in cases:
        with pytest.raises(kind, match=words) as err:
            decode_image(blob)
        assert err.value.path is None and str(err.value) == err.value.problem
    for path in (tmp_path / "a.png", tmp_path / "a.tif"):  # from the header: 1200 pixels
        with pytest.raises(ImageTooLargeError, match="1200 pixels, more than the limit of 1199"):
            decode_image(path.read_bytes(), max_pixels=1199)
        assert decode_image(path.read_bytes(), max_pixels=1200).shape == (30, 40)


def test_a_multipage_tiff_whose_pages_differ_in_size_is_refused(tmp_path):
    """Pages of 40x40 and 50x60: it was scored on page 1 only (a same-size stack is refused);
    now refused alike, from a file and from bytes."""
    from ssimae.io.images import decode_image

    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((40, 40), np.uint8))
        tif.write(np.full((60, 50), 255, np.uint8))
    with pytest.raises(SsimaeError, match="multi-page TIFF of 2 images") as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    with pytest.raises(SsimaeError, match="not a stack"):
        decode_image(path.read_bytes())
