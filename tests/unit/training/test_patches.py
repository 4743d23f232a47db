"""Sec. 4.2 training patches: preprocessing, padding, sampling, determinism, streaming."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.transform import resize

from ssimae.errors import SsimaeError
from ssimae.models.network import PATCH_SIZE
from ssimae.training.patches import PATCHES_PER_EPOCH, RandomPatches, make_loader
from ssimae.core.preprocess import Preprocess, pad_to_patch

RNG = np.random.default_rng(2)


def rand(h, w):
    return RNG.random((h, w)).astype(np.float32)


def write_pngs(tmp_path, shapes):
    paths = []
    for i, (h, w) in enumerate(shapes):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(RNG.integers(0, 256, (h, w), dtype=np.uint8)).save(paths[-1])
    return paths


def test_paper_defaults():
    assert PATCHES_PER_EPOCH == 10000 and PATCH_SIZE == 128
    ds = RandomPatches([rand(130, 140)])
    assert len(ds) == 10000 and ds.patch_size == 128


def test_preprocess_size_matches_skimage():
    img = rand(512, 512)
    out = Preprocess(size=(256, 256)).apply(img)
    ref = resize(img, (256, 256), anti_aliasing=True)
    assert out.dtype == np.float32 and out.shape == (256, 256)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_preprocess_scale_matches_skimage():
    img = rand(101, 60)
    out = Preprocess(scale=0.5).apply(img)
    ref = resize(img, (50, 30), anti_aliasing=True)  # round(50.5) == 50 (banker's), round(30) == 30
    np.testing.assert_allclose(out, ref, atol=1e-6)
    up = Preprocess(scale=2).apply(img)
    np.testing.assert_allclose(up, resize(img, (202, 120), anti_aliasing=False), atol=1e-6)


def test_preprocess_identity_and_dict_roundtrip():
    img = rand(20, 30)
    np.testing.assert_array_equal(Preprocess().apply(img), img)
    for p in (Preprocess(), Preprocess(size=(256, 200)), Preprocess(scale=0.25)):
        assert Preprocess.from_dict(p.to_dict()) == p
    assert Preprocess(size=[256, 200]).to_dict() == {"size": [256, 200], "scale": None, "color": False}
    assert Preprocess.from_dict({"size": None, "scale": None}) == Preprocess()  # stored before --color: gray
    with pytest.raises(SsimaeError, match="not both"):
        Preprocess(size=(10, 10), scale=0.5)
    with pytest.raises(SsimaeError, match="unknown"):
        Preprocess.from_dict({"sise": [1, 2]})


def test_pad_to_patch_symmetric_bottom_right():
    img = rand(50, 200)
    out = pad_to_patch(img)
    assert out.shape == (128, 200)
    np.testing.assert_array_equal(out[:50], img)
    for j in range(50):  # row 50 + j mirrors row 49 - j (edge pixel repeated)
        np.testing.assert_array_equal(out[50 + j], img[49 - j])
    assert pad_to_patch(img[:40, :40]).shape == (128, 128)  # less than half a patch: mirrored again
    big = rand(130, 129)
    assert pad_to_patch(big) is big


def test_crops_are_slices_of_the_prepared_source():
    sources = [rand(300, 260), rand(90, 100), rand(128, 128)]
    pre = Preprocess(scale=0.8)
    prepared = [pad_to_patch(pre.apply(s)) for s in sources]
    ds = RandomPatches(sources, patches_per_epoch=60, preprocess=pre, seed=5)
    ds.set_epoch(2)
    seen = set()
    for i in range(len(ds)):
        x = ds[i]
        assert x.dtype == torch.float32 and x.shape == (1, 128, 128)
        k, top, left = ds.locate(2, i)
        h, w = prepared[k].shape
        assert 0 <= top <= h - 128 and 0 <= left <= w - 128
        np.testing.assert_array_equal(x[0].numpy(), prepared[k][top:top + 128, left:left + 128])
        seen.add(k)
    assert seen == {0, 1, 2}


def test_image_choice_is_proportional_to_area_and_positions_uniform():
    ds = RandomPatches([rand(128, 128), rand(384, 128)], patches_per_epoch=4000)
    locs = np.array([ds.locate(0, i) for i in range(4000)])
    assert abs((locs[:, 0] == 0).mean() - 0.25) < 0.03  # areas 1:3
    tops = locs[locs[:, 0] == 1, 1]  # uniform on 0..256
    assert tops.min() <= 3 and tops.max() >= 253 and abs(tops.mean() - 128) < 8


def test_items_depend_on_seed_epoch_and_index_only():
    sources = [rand(200, 300), rand(150, 140)]
    a = RandomPatches(sources, patches_per_epoch=20, seed=1)
    b = RandomPatches(sources, patches_per_epoch=20, seed=1)
    c = RandomPatches(sources, patches_per_epoch=20, seed=2)
    assert torch.equal(a[7], b[7]) and torch.equal(a[(3, 7)], b[(3, 7)])
    assert not torch.equal(a[(0, 7)], a[(1, 7)])
    assert not torch.equal(a[7], c[7])
    b.set_epoch(3)
    assert torch.equal(b[7], a[(3, 7)])
    assert torch.equal(a[-1], a[19])
    with pytest.raises(IndexError):
        a[20]


def test_loader_is_independent_of_workers_and_follows_epochs():
    ds = RandomPatches([rand(200, 300), rand(150, 140)], patches_per_epoch=48, seed=3)
    ref = {e: torch.stack([ds[(e, i)] for i in range(48)]) for e in (0, 1)}
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=16, num_workers=workers)
        for e in (0, 1):
            ds.set_epoch(e)
            got = torch.cat(list(loader))
            assert torch.equal(got, ref[e]), (workers, e)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global torch RNG is untouched
    assert not torch.equal(ref[0], ref[1])


def test_loader_can_resume_inside_an_epoch():
    ds = RandomPatches([rand(200, 300)], patches_per_epoch=40, seed=4)
    ds.set_epoch(2)
    loader = make_loader(ds, batch_size=8, start=16)
    assert torch.equal(torch.cat(list(loader)), torch.stack([ds[(2, i)] for i in range(16, 40)]))
    ds.set_epoch(3)  # later epochs are whole
    assert torch.equal(torch.cat(list(loader)), torch.stack([ds[(3, i)] for i in range(40)]))


def test_streaming_matches_in_memory_and_bounds_the_cache(tmp_path):
    paths = write_pngs(tmp_path, [(200, 210), (140, 300), (100, 90), (256, 256)])
    mem = RandomPatches(paths, patches_per_epoch=64, patches_per_image=4)
    lazy = RandomPatches(paths, patches_per_epoch=64, patches_per_image=4, cache_bytes=0, lru_bytes=300_000)
    assert mem.in_memory and not lazy.in_memory and lazy.reads == 0
    for i in range(64):
        assert torch.equal(mem[i], lazy[i])
        assert lazy._lru_used <= 300_000 or len(lazy._lru) == 1
    assert lazy.reads <= 16  # one read per block of 4 patches at most


def test_streaming_default_groups_patches_per_image(tmp_path):
    paths = write_pngs(tmp_path, [(130, 130)] * 5)
    lazy = RandomPatches(paths, patches_per_epoch=32, cache_bytes=0)
    assert lazy.patches_per_image == 8
    blocks = [[lazy.locate(0, i)[0] for i in range(b * 8, b * 8 + 8)] for b in range(4)]
    assert all(len(set(b)) == 1 for b in blocks)
    assert RandomPatches(paths, patches_per_epoch=32).patches_per_image == 1


def test_small_image_files_are_padded(tmp_path):
    paths = write_pngs(tmp_path, [(40, 70)])
    ds = RandomPatches(paths, patches_per_epoch=3)
    src = np.asarray(Image.open(paths[0]), dtype=np.float32) / 255.0
    ref = np.pad(src, ((0, 88), (0, 58)), mode="symmetric")
    np.testing.assert_allclose(ds[0][0].numpy(), ref, atol=1e-7)


def test_no_images_is_an_error():
    with pytest.raises(SsimaeError, match="no training images"):
        RandomPatches([])
