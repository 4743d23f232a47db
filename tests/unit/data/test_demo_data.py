"""Tests of the built-in demo dataset (ssimae.data.demo_data)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from scipy import ndimage

from ssimae.data import demo_data as dd
from ssimae.errors import SsimaeError
from ssimae.core.ssim_torch import ssim_map

TINY = dict(size=160, n_train=3, n_test_good=2, n_test_per_type=2, n_calibration=2)
TYPES = ("cut", "roughened", "contamination")


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _tensor(a: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 -> (1, 1, H, W) float in [0, 1]."""
    return torch.from_numpy(a.astype(np.float32) / 255)[None, None]


def _tree(root) -> dict[str, bytes]:
    """Relative path -> bytes of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return dd.make_demo_data(tmp_path_factory.mktemp("demo") / "out", seed=3, **TINY)


def test_layout_counts_and_sizes(tiny):
    expected = {"README.txt"}
    expected |= {f"train/good/{i:03d}.png" for i in range(3)}
    expected |= {f"test/good/{i:03d}.png" for i in range(2)}
    for t in TYPES:
        expected |= {f"test/{t}/{i:03d}.png" for i in range(2)}
        expected |= {f"ground_truth/{t}/{i:03d}_mask.png" for i in range(2)}
    expected |= {f"calibration/good/{i:03d}.png" for i in range(2)}
    assert set(_tree(tiny)) == expected
    for rel in expected - {"README.txt"}:
        img = Image.open(tiny / rel)
        assert img.mode == "L" and img.size == (160, 160), rel
    for t in TYPES:
        for i in range(2):
            mask = _read(tiny / f"ground_truth/{t}/{i:03d}_mask.png")
            assert set(np.unique(mask)) == {0, 255}  # binary and non-empty
    readme = (tiny / "README.txt").read_text()
    for word in ("brick", "seed=3", "size=160", "cut", "roughened", "contamination", "n_calibration=2",
                 "calibration/good", "test region", "never share a pixel with a training crop"):
        assert word in readme


def test_counts_as_requested(tmp_path):
    out = dd.make_demo_data(tmp_path / "d", size=96, n_train=4, n_test_good=0, n_test_per_type=1, n_calibration=0)
    assert not (out / "calibration").exists()  # none asked for: no folder
    assert len(list((out / "train/good").glob("*.png"))) == 4
    assert list((out / "test/good").glob("*.png")) == []
    for t in TYPES:
        assert len(list((out / f"test/{t}").glob("*.png"))) == 1
        assert len(list((out / f"ground_truth/{t}").glob("*_mask.png"))) == 1


def test_deterministic_by_seed(tiny, tmp_path):
    same = dd.make_demo_data(tmp_path / "same", seed=3, **TINY)
    assert _tree(same) == _tree(tiny)
    other = _tree(dd.make_demo_data(tmp_path / "other", seed=4, **TINY))
    ref = _tree(tiny)
    for rel in ref:
        if rel.endswith(".png") and "ground_truth" not in rel:
            assert other[rel] != ref[rel], rel


def test_images_are_the_recorded_texture_crops_and_masks_match_files(tiny):
    """Every written image is texture[box] (transformed) plus, for defects, changes only
    inside the written mask; the reference is skimage.data.brick() cropped here."""
    tex = skimage.data.brick()
    for kind, folder in [("train", "train/good"), ("good", "test/good"), ("calibration", "calibration/good")] \
            + [(t, f"test/{t}") for t in TYPES]:
        for i in range(2):
            clean, image, mask, crop = dd.demo_sample(kind, i, seed=3, size=160)
            y0, x0, y1, x1 = crop.box
            ref = np.rot90(tex[y0:y1, x0:x1], crop.k)
            ref = ref[:, ::-1] if crop.flip else ref
            assert np.array_equal(clean, ref)
            written = _read(tiny / folder / f"{i:03d}.png")
            assert np.array_equal(written, image)
            if kind in TYPES:
                assert np.array_equal(_read(tiny / f"ground_truth/{kind}/{i:03d}_mask.png") > 0, mask)
            else:
                assert np.array_equal(written, ref)


def test_train_and_test_regions_are_disjoint():
    """Recompute all crop boxes of a default-size dataset: no training box shares a pixel
    with any test box, and all lie inside the 512 x 512 texture."""
    tex = dd.load_texture("brick")
    boxes = {"train": [], "test": []}
    for kind, n in [("train", 40), ("good", 10)] + [(t, 8) for t in TYPES]:
        for i in range(n):
            crop = dd.draw_crop(dd.image_rng(0, kind, i), tex.shape, 256, "train" if kind == "train" else "test", "brick")
            boxes["train" if kind == "train" else "test"].append(crop.box)
    cover = {s: np.zeros((512, 512), dtype=bool) for s in boxes}
    for split, bs in boxes.items():
        for y0, x0, y1, x1 in bs:
            assert 0 <= y0 < y1 <= 512 and 0 <= x0 < x1 <= 512 and y1 - y0 == x1 - x0 == 256
            cover[split][y0:y1, x0:x1] = True
    assert not (cover["train"] & cover["test"]).any()
    assert len(set(boxes["train"])) > 30  # crops vary


def test_calibration_images_are_new_good_parts_of_the_test_region():
    """The default dataset's 20 calibration crops (the generators make_demo_data uses) lie in
    the test columns, share no pixel with any of the 40 training crops, are defect-free (the
    clean crop, an empty mask) and differ from one another."""
    tex = dd.load_texture("brick")
    assert dd.DEFAULTS["n_calibration"] == 20
    train = np.zeros((512, 512), dtype=bool)
    for i in range(dd.DEFAULTS["n_train"]):
        y0, x0, y1, x1 = dd.draw_crop(dd.image_rng(0, "train", i), tex.shape, 256, "train", "brick").box
        train[y0:y1, x0:x1] = True
    c0, c1 = dd.split_regions(tex.shape, 256)["test"]
    boxes = []
    for i in range(dd.DEFAULTS["n_calibration"]):
        crop = dd.draw_crop(dd.image_rng(0, "calibration", i), tex.shape, 256, "test", "brick")
        y0, x0, y1, x1 = crop.box
        assert c0 <= x0 < x1 <= c1 and 0 <= y0 < y1 <= 512
        assert not train[y0:y1, x0:x1].any(), f"calibration image {i} overlaps a training crop"
        clean, image, mask, same = dd.demo_sample("calibration", i, seed=0, size=256, tex=tex)
        assert same == crop and np.array_equal(image, clean) and not mask.any()
        boxes.append((crop.y0, crop.flip))
    assert len(set(boxes)) > 15


def test_calibration_images_leave_every_other_image_unchanged(tmp_path):
    """The calibration kind has a generator code of its own after the existing ones, so adding
    calibration images changes no other file's bytes, and the other kinds draw what they drew
    before it existed (crops and train / good pixels pinned from the version before it)."""
    assert dd.KINDS[:5] == ("train", "good", "cut", "roughened", "contamination") and dd.KINDS[-1] == "calibration"
    for code, kind in enumerate(dd.KINDS):
        assert dd.image_rng(7, kind, 3).integers(1 << 30) == np.random.default_rng([7, code, 3]).integers(1 << 30)
    sizes = dict(size=96, n_train=2, n_test_good=1, n_test_per_type=1)
    without = _tree(dd.make_demo_data(tmp_path / "a", **sizes, n_calibration=0))
    with_ = _tree(dd.make_demo_data(tmp_path / "b", **sizes, n_calibration=3))
    assert {k for k in with_ if k.startswith("calibration/")} == {f"calibration/good/{i:03d}.png" for i in range(3)}
    assert {k: v for k, v in with_.items() if not k.startswith("calibration/") and k != "README.txt"} \
        == {k: v for k, v in without.items() if k != "README.txt"}
    pinned = {"train": [(286, 16, 0, False), (98, 139, 0, True), (348, 113, 0, False)],
              "good": [(345, 352, 0, False), (140, 352, 0, True), (270, 352, 0, False)],
              "cut": [(298, 352, 0, False), (217, 352, 0, True), (173, 352, 0, True)],
              "roughened": [(111, 352, 0, False), (305, 352, 0, True), (261, 352, 0, True)],
              "contamination": [(3, 352, 0, True), (274, 352, 0, False), (103, 352, 0, True)]}
    h = hashlib.sha256()
    for kind, crops in pinned.items():
        for i, expected in enumerate(crops):
            _, image, _, c = dd.demo_sample(kind, i, seed=3, size=160)
            assert (c.y0, c.x0, c.k, c.flip) == expected, (kind, i)
            if kind in ("train", "good"):
                h.update(image.tobytes())
    assert h.hexdigest() == "2a0bba9990b066497397b4f5522b31ab68212b14bc36dc04d9a05687dcad7753"  # main at 15a50ab


@pytest.mark.parametrize("kind", TYPES)
def test_defects_change_only_masked_pixels_and_are_visible(kind):
    for i in range(3):
        clean, image, mask, _ = dd.demo_sample(kind, i, seed=1, size=160)
        assert image.dtype == np.uint8 and mask.dtype == bool and mask.shape == image.shape
        assert 20 <= mask.sum() < 0.25 * mask.size
        assert np.array_equal(image[~mask], clean[~mask])  # untouched outside
        diff = np.abs(image.astype(int) - clean)
        assert diff[mask].mean() > 15  # clearly changed inside
        assert 1 <= ndimage.label(mask, structure=np.ones((3, 3)))[1] <= 2  # 1-2 separate defects
        # SSIM residual sees the defect: far larger inside the mask than outside
        res = 1 - ssim_map(_tensor(clean), _tensor(image))[0, 0].numpy()
        assert res[mask].mean() > 0.3 and res[mask].mean() > 20 * res[~mask].mean()


def test_defect_geometry_per_type():
    """Cuts are thin (no pixel deeper than 2.5 px inside) and long (skeleton 15-75 px);
    blobs are compact (15-40 and 10-35 px ellipses, up to 30 % radius modulation)."""
    from skimage.morphology import skeletonize

    for i in range(4):
        _, _, m, _ = dd.demo_sample("cut", i, seed=2, size=160)
        labels, n = ndimage.label(m, structure=np.ones((3, 3)))
        for lab in range(1, n + 1):
            comp = labels == lab
            assert ndimage.distance_transform_edt(comp).max() <= 2.5
            assert 15 <= skeletonize(comp).sum() <= 75
        for kind, (lo, hi) in (("roughened", (15, 40)), ("contamination", (10, 35))):
            _, _, m, _ = dd.demo_sample(kind, i, seed=2, size=160)
            labels, n = ndimage.label(m)
            assert 1 <= n <= 2
            for lab in range(1, n + 1):
                area = (labels == lab).sum()
                assert np.pi / 4 * (0.5 * lo) ** 2 <= area <= np.pi / 4 * (1.5 * hi) ** 2


def test_roughened_keeps_the_mean_changes_structure():
    """Roughened areas keep the local mean but change the structure: the mean over the
    mask moves far less than the per-pixel values do."""
    for i in range(4):
        clean, image, mask, _ = dd.demo_sample("roughened", i, seed=5, size=160)
        c, d = clean[mask].astype(float), image[mask].astype(float)
        assert abs(c.mean() - d.mean()) < 0.5 * np.abs(c - d).mean()


def test_other_textures_and_augmentation():
    for name in ("grass", "gravel"):
        tex = getattr(skimage.data, name)()
        clean, image, mask, crop = dd.demo_sample("contamination", 0, texture=name, size=128)
        y0, x0, y1, x1 = crop.box
        ref = np.rot90(tex[y0:y1, x0:x1], crop.k)
        assert np.array_equal(clean, ref[:, ::-1] if crop.flip else ref)
        assert np.array_equal(image[~mask], clean[~mask]) and mask.any()
    # brick is only mirrored left-right, never rotated
    crops = [dd.demo_sample("train", i, size=128)[3] for i in range(20)]
    assert {c.k for c in crops} == {0} and {c.flip for c in crops} == {False, True}
    crops = [dd.demo_sample("train", i, texture="grass", size=128)[3] for i in range(40)]
    assert len({c.k for c in crops}) == 4


def test_bad_arguments(tmp_path):
    with pytest.raises(SsimaeError, match="texture"):
        dd.make_demo_data(tmp_path / "a", texture="wood")
    with pytest.raises(SsimaeError, match="size"):
        dd.make_demo_data(tmp_path / "b", size=300)
    with pytest.raises(SsimaeError, match="size"):
        dd.make_demo_data(tmp_path / "c", size=64)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    with pytest.raises(SsimaeError, match="not empty"):
        dd.make_demo_data(tmp_path / "full", **TINY)
    with pytest.raises(SsimaeError, match="n_calibration"):
        dd.make_demo_data(tmp_path / "d", n_calibration=-1)


def test_overwrite_replaces_old_images(tmp_path):
    out = dd.make_demo_data(tmp_path / "d", size=96, n_train=5, n_test_good=1, n_test_per_type=1)
    (out / "notes.txt").write_text("mine")
    assert len(list((out / "calibration/good").iterdir())) == 20  # the default
    dd.make_demo_data(out, size=96, n_train=2, n_test_good=1, n_test_per_type=1, overwrite=True, n_calibration=2)
    assert sorted(p.name for p in (out / "train/good").iterdir()) == ["000.png", "001.png"]
    assert sorted(p.name for p in (out / "calibration/good").iterdir()) == ["000.png", "001.png"]
    dd.make_demo_data(out, size=96, n_train=2, n_test_good=1, n_test_per_type=1, overwrite=True, n_calibration=0)
    assert not (out / "calibration").exists()  # replaced by none
    assert (out / "notes.txt").read_text() == "mine"  # only the demo's own folders are replaced


def test_the_dataset_reader_ignores_the_calibration_folder(tiny):
    """load_dataset (MVTec layout) reads train/, test/ and ground_truth/ only: the calibration
    images are neither training nor test images."""
    from ssimae.data.datasets import load_dataset

    ds = load_dataset(tiny, log=None, progress=False)
    every = [*ds.train, *(s.image for s in ds.test)]
    assert ds.layout == "mvtec" and len(ds.train) == 3 and len(ds.test) == 2 + 3 * 2
    assert not any("calibration" in p.parts for p in every)
