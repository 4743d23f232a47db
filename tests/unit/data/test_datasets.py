"""Dataset layouts on tiny fake trees, the deterministic split, and one test per bad-data case."""
from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np
import pytest
from PIL import Image

from ssimae.data.datasets import detect_layout, load_dataset, split_names
from ssimae.errors import SsimaeError

RNG = np.random.default_rng(1)


def img(path: Path, h=40, w=50, value=None, mode=None) -> Path:
    """Write a random (or constant) 8-bit gray PNG/JPEG; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = RNG.integers(0, 256, (h, w), dtype=np.uint8) if value is None else np.full((h, w), value, np.uint8)
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    im.save(path)
    return path


def mask(path: Path, h=40, w=50, soft=False) -> Path:
    """Write a 0/255 mask with a square defect (soft: with a ramp of gray values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((h, w), np.uint8)
    arr[5:15, 5:15] = 255
    if soft:
        arr[4, 5:15] = 100
    Image.fromarray(arr).save(path)
    return path


def mvtec(root: Path) -> Path:
    for i in range(3):
        img(root / "train/good" / f"{i:03d}.png")
    for i in range(2):
        img(root / "test/good" / f"{i:03d}.png")
        img(root / "test/crack" / f"{i:03d}.png")
        mask(root / "ground_truth/crack" / f"{i:03d}_mask.png")
    return root


def generic(tmp: Path) -> tuple[Path, Path, Path]:
    train, test, masks = tmp / "tr", tmp / "te", tmp / "gt"
    for i in range(2):
        img(train / f"t{i}.png")
    img(test / "plain.png")  # no mask: good
    img(test / "marked.png")
    mask(masks / "marked_m.png")
    img(test / "good" / "g.png")
    img(test / "hole" / "a.png")
    mask(masks / "hole" / "a_m.png")  # same subfolder
    img(test / "scratch" / "b.png")
    mask(masks / "b_m.png")  # directly in mask_dir
    return train, test, masks


def load(root, **kw):
    lines: list[str] = []
    kw.setdefault("log", lines.append)
    return load_dataset(root, **kw), lines


# ----------------------------------------------------------------------------- layouts


def test_mvtec_detect_and_load(tmp_path):
    root = mvtec(tmp_path / "carpet")
    assert detect_layout(root) == "mvtec"
    ds, lines = load(root)
    assert ds.layout == "mvtec" and lines == [] and ds.skipped == [] and ds.warnings == []
    assert ds.train == [root / "train/good" / f"{i:03d}.png" for i in range(3)]
    assert ds.defect_types == ["good", "crack"]
    by_rel = {s.rel: s for s in ds.test}
    assert set(by_rel) == {PurePath("good/000.png"), PurePath("good/001.png"),
                           PurePath("crack/000.png"), PurePath("crack/001.png")}
    assert by_rel[PurePath("crack/001.png")].mask == root / "ground_truth/crack/001_mask.png"
    assert by_rel[PurePath("good/000.png")].mask is None


def test_nanotwice_detect_and_load(tmp_path):
    root = tmp_path / "nano"
    for i in range(2):
        img(root / "Normal" / f"n{i}.tif")
    for i in range(3):
        img(root / "Anomalous/images" / f"{i:02d}.tif")
        mask(root / "Anomalous/gt" / f"{i:02d}_gt.png")
    assert detect_layout(root) == "nanotwice"
    ds, _ = load(root)
    assert [p.name for p in ds.train] == ["n0.tif", "n1.tif"]
    assert ds.defect_types == ["anomalous"]
    assert [(s.image.name, s.mask.name, str(s.rel)) for s in ds.test] == [
        (f"{i:02d}.tif", f"{i:02d}_gt.png", f"anomalous/{i:02d}.tif") for i in range(3)]


def magnetic(root: Path, n_free=10) -> Path:
    for i in range(n_free):
        img(root / "MT_Free/Imgs" / f"exp{i}.jpg")
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(root / "MT_Free/Imgs" / f"exp{i}.png")  # all-good mask
    for i in range(2):
        img(root / "MT_Blowhole/Imgs" / f"b{i}.jpg")
        mask(root / "MT_Blowhole/Imgs" / f"b{i}.png", soft=True)
    return root


def test_magnetic_tile_detect_and_load(tmp_path):
    root = magnetic(tmp_path / "mt")
    assert detect_layout(root) == "magnetic-tile"
    ds, lines = load(root)
    assert ds.warnings == [] and lines == []  # soft masks are normal here: no warnings
    assert ds.defect_types == ["good", "blowhole"]
    good = [s for s in ds.test if s.defect_type == "good"]
    assert len(good) == 2 and len(ds.train) == 8  # round(0.2 * 10)
    assert {s.image for s in good}.isdisjoint(ds.train)
    assert {s.image.name for s in good} | {p.name for p in ds.train} == {f"exp{i}.jpg" for i in range(10)}
    holes = [s for s in ds.test if s.defect_type == "blowhole"]
    assert [(s.image.name, s.mask.name, str(s.rel)) for s in holes] == [
        ("b0.jpg", "b0.png", "blowhole/b0.jpg"), ("b1.jpg", "b1.png", "blowhole/b1.jpg")]


def test_magnetic_tile_split_follows_documented_rule(tmp_path):
    root = magnetic(tmp_path / "mt", n_free=12)
    ds, _ = load(root, test_fraction=0.25, seed=7)
    names = sorted(f"exp{i}.jpg" for i in range(12))
    order = np.random.default_rng(7).permutation(12)
    assert sorted(s.image.name for s in ds.test if s.defect_type == "good") == sorted(names[i] for i in order[:3])


def test_split_names_deterministic_disjoint_and_seeded():
    names = [f"{i}.jpg" for i in range(50)]
    tr, te = split_names(names, 0.2, 0)
    assert len(te) == 10 and len(tr) == 40 and set(tr).isdisjoint(te) and set(tr) | set(te) == set(names)
    assert split_names(list(reversed(names)), 0.2, 0) == (tr, te)  # input order does not matter
    assert split_names(names, 0.2, 1)[1] != te
    assert split_names(names, 0.0, 0) == (sorted(names), [])
    assert len(split_names(names[:3], 0.01, 0)[1]) == 1  # at least one test image
    with pytest.raises(SsimaeError, match="test_fraction"):
        split_names(names, 1.0, 0)


def test_generic_layout(tmp_path):
    train, test, masks = generic(tmp_path)
    ds, lines = load(None, train_dir=train, test_dir=test, mask_dir=masks, mask_suffix="_m")
    assert ds.layout == "generic" and ds.skipped == []
    assert [p.name for p in ds.train] == ["t0.png", "t1.png"]
    got = {str(s.rel): (s.defect_type, s.mask and s.mask.relative_to(masks).as_posix()) for s in ds.test}
    assert got == {"plain.png": ("good", None), "marked.png": ("defect", "marked_m.png"),
                   "good/g.png": ("good", None), "hole/a.png": ("hole", "hole/a_m.png"),
                   "scratch/b.png": ("scratch", "b_m.png")}


def test_explicit_dirs_force_generic_and_conflicts_are_errors(tmp_path):
    train, test, masks = generic(tmp_path)
    with pytest.raises(SsimaeError, match="generic"):
        load_dataset(None, "mvtec", train_dir=train, log=None)
    with pytest.raises(SsimaeError, match="unknown dataset format"):
        load_dataset(tmp_path, "coco", log=None)


def test_undetectable_layout_names_folder_and_expectations(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(SsimaeError) as err:
        detect_layout(tmp_path)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path)) and "train/good" in msg and "Normal" in msg and "MT_" in msg


def test_collection_of_datasets_lists_them(tmp_path):
    mvtec(tmp_path / "carpet")
    mvtec(tmp_path / "grid")
    with pytest.raises(SsimaeError, match="carpet, grid"):
        detect_layout(tmp_path)


# ----------------------------------------------------------------------------- bad data


def test_missing_folder(tmp_path):
    with pytest.raises(SsimaeError, match="folder not found"):
        load_dataset(tmp_path / "nope", "mvtec", log=None)


def test_empty_train_folder(tmp_path):
    root = mvtec(tmp_path / "d")
    for p in (root / "train/good").iterdir():
        p.unlink()
    with pytest.raises(SsimaeError, match="no images in folder") as err:
        load(root)
    assert str(err.value).startswith(str(root / "train/good"))


def test_truncated_png_error_or_skip(tmp_path):
    root = mvtec(tmp_path / "d")
    bad = root / "train/good/001.png"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(SsimaeError, match="truncated") as err:
        load(root)
    assert str(err.value).startswith(str(bad))
    ds, lines = load(root, skip_bad=True)
    assert bad not in ds.train and len(ds.train) == 2
    assert [p for p, _ in ds.skipped] == [bad]
    assert len(lines) == 1 and lines[0].startswith(f"skipping {bad}: truncated or corrupt")


def test_zero_byte_file_error_or_skip(tmp_path):
    root = mvtec(tmp_path / "d")
    bad = root / "test/good/000.png"
    bad.write_bytes(b"")
    with pytest.raises(SsimaeError, match="empty file"):
        load(root)
    ds, _ = load(root, skip_bad=True)
    assert bad not in {s.image for s in ds.test} and ds.skipped == [(bad, "empty file (0 bytes)")]


def test_text_file_named_png(tmp_path):
    root = mvtec(tmp_path / "d")
    bad = root / "train/good/zz.png"
    bad.write_text("not an image")
    with pytest.raises(SsimaeError, match="not an image"):
        load(root)
    assert load(root, skip_bad=True)[0].skipped[0][0] == bad


def test_verify_false_does_not_decode(tmp_path):
    root = mvtec(tmp_path / "d")
    (root / "train/good/zz.png").write_text("not an image")
    ds, _ = load(root, verify=False)
    assert root / "train/good/zz.png" in ds.train


def test_non_image_file_is_ignored_with_one_line(tmp_path):
    root = mvtec(tmp_path / "d")
    (root / "train/good/notes.txt").write_text("hi")
    ds, lines = load(root)
    assert len(ds.train) == 3
    assert len(lines) == 1 and "notes.txt" in lines[0] and str(root / "train/good") in lines[0]


def test_hidden_file_is_ignored_silently(tmp_path):
    root = mvtec(tmp_path / "d")
    (root / "train/good/._000.png").write_bytes(b"\x00\x05junk")
    (root / "test/crack/.DS_Store").write_bytes(b"junk")
    ds, lines = load(root)
    assert lines == [] and len(ds.train) == 3 and len(ds.test) == 4


def test_duplicate_stems_are_ambiguous(tmp_path):
    root = mvtec(tmp_path / "d")
    img(root / "train/good/001.jpg")
    with pytest.raises(SsimaeError, match="ambiguous"):
        load(root)
    ds, lines = load(root, skip_bad=True)
    assert [p.name for p in ds.train] == ["000.png", "002.png"]
    assert sorted(p.name for p, _ in ds.skipped) == ["001.jpg", "001.png"] and len(lines) == 2


def test_mask_of_wrong_size(tmp_path):
    root = mvtec(tmp_path / "d")
    bad = mask(root / "ground_truth/crack/001_mask.png", h=30, w=20)
    with pytest.raises(SsimaeError, match="mask is 20x30 .* but its image is 50x40") as err:
        load(root)
    assert str(err.value).startswith(str(bad))
    ds, _ = load(root, skip_bad=True)
    assert root / "test/crack/001.png" not in {s.image for s in ds.test} and ds.skipped[0][0] == bad


def test_non_binary_mask_warns_once_and_is_kept(tmp_path):
    root = mvtec(tmp_path / "d")
    soft = mask(root / "ground_truth/crack/000_mask.png", soft=True)
    ds, lines = load(root)
    assert len(ds.test) == 4
    assert ds.warnings == [f"{soft}: mask is not binary; thresholded (defect where > half the range)"]
    assert len(lines) == 1 and str(soft) in lines[0]


def test_mask_without_image(tmp_path):
    root = mvtec(tmp_path / "d")
    orphan = mask(root / "ground_truth/crack/007_mask.png")
    with pytest.raises(SsimaeError, match="mask without an image") as err:
        load(root)
    assert str(err.value).startswith(str(orphan))
    ds, _ = load(root, skip_bad=True)
    assert ds.skipped == [(orphan, "mask without an image")] and len(ds.test) == 4


def test_mask_folder_without_test_folder(tmp_path):
    root = mvtec(tmp_path / "d")
    orphan = mask(root / "ground_truth/hole/000_mask.png")
    with pytest.raises(SsimaeError, match="mask without an image"):
        load(root)
    assert load(root, skip_bad=True)[0].skipped[0][0] == orphan


def test_defective_image_without_mask(tmp_path):
    root = mvtec(tmp_path / "d")
    lonely = img(root / "test/crack/005.png")
    with pytest.raises(SsimaeError, match="has no mask") as err:
        load(root)
    assert str(err.value).startswith(str(lonely)) and "005_mask.png" in str(err.value)
    ds, _ = load(root, skip_bad=True)
    assert lonely not in {s.image for s in ds.test} and ds.skipped[0][0] == lonely


def test_generic_defect_folder_image_without_mask(tmp_path):
    train, test, masks = generic(tmp_path)
    lonely = img(test / "hole" / "c.png")
    with pytest.raises(SsimaeError, match="has no mask") as err:
        load(None, train_dir=train, test_dir=test, mask_dir=masks, mask_suffix="_m")
    assert str(err.value).startswith(str(lonely))


def test_magnetic_tile_mask_without_image_and_image_without_mask(tmp_path):
    root = magnetic(tmp_path / "mt")
    orphan = mask(root / "MT_Blowhole/Imgs/b9.png")
    with pytest.raises(SsimaeError, match="mask without an image"):
        load(root)
    orphan.unlink()
    lonely = img(root / "MT_Blowhole/Imgs/b8.jpg")
    with pytest.raises(SsimaeError, match="has no mask") as err:
        load(root)
    assert str(err.value).startswith(str(lonely))


def test_small_image_is_kept(tmp_path):
    root = mvtec(tmp_path / "d")
    small = img(root / "train/good/small.png", h=20, w=30)
    ds, lines = load(root)
    assert small in ds.train and lines == []


def test_constant_image_warns_and_is_kept(tmp_path):
    root = mvtec(tmp_path / "d")
    black = img(root / "train/good/black.png", value=0)
    white = img(root / "train/good/white.png", value=255)
    ds, lines = load(root)
    assert black in ds.train and white in ds.train
    assert len(ds.warnings) == 2 and "constant image" in ds.warnings[0] and str(black) in ds.warnings[0]
    assert "1.000" in ds.warnings[1] and len(lines) == 2


def test_rgba_16bit_and_mixed_sizes_are_fine(tmp_path):
    root = mvtec(tmp_path / "d")
    img(root / "train/good/rgba.png", h=70, w=90, mode="RGBA")
    p16 = root / "train/good/deep.png"
    Image.fromarray(RNG.integers(0, 65536, (300, 200), dtype=np.uint16)).save(p16)
    img(root / "test/crack/big.png", h=120, w=130)
    mask(root / "ground_truth/crack/big_mask.png", h=120, w=130)
    ds, lines = load(root)
    assert lines == [] and len(ds.train) == 5 and len(ds.test) == 5
