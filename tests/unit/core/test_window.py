"""Sliding-window reconstruction against a brute-force loop."""
import numpy as np
import pytest
import torch

from ssimae.core.window import STRIDE, coverage, patch_starts, sliding_window


def test_paper_stride():
    assert STRIDE == 30


@pytest.mark.parametrize("length", [128, 129, 157, 158, 256, 300, 512])
def test_patch_starts_cover_every_pixel(length):
    starts = patch_starts(length, 128, 30)
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s <= length - 128
        covered[s:s + 128] = True
    assert covered.all()
    assert starts[0] == 0 and starts[-1] == length - 128
    assert all(b - a <= 30 for a, b in zip(starts, starts[1:]))
    assert starts == sorted(set(starts))


def test_short_axis_rejected():
    with pytest.raises(ValueError):
        patch_starts(100, 128, 30)


def brute_force(image, fn, patch, stride):
    h, w = image.shape
    acc = np.zeros((h, w))
    cnt = np.zeros((h, w))
    for r in patch_starts(h, patch, stride):
        for c in patch_starts(w, patch, stride):
            out = fn(torch.from_numpy(image[r:r + patch, c:c + patch])[None, None]).numpy()[0, 0]
            acc[r:r + patch, c:c + patch] += out
            cnt[r:r + patch, c:c + patch] += 1
    return acc / cnt


@pytest.mark.parametrize("shape,batch", [((150, 200), 3), ((128, 128), 64), ((171, 140), 1)])
def test_sliding_window_equals_brute_force_average(shape, batch):
    rng = np.random.default_rng(0)
    image = rng.random(shape)

    def fn(x):  # position-dependent output: detects any misplaced patch
        return x * 2 + x.mean(dim=(2, 3), keepdim=True)

    ours = sliding_window(torch.from_numpy(image), fn, patch=32, stride=13, batch_size=batch).numpy()[0]
    assert np.allclose(ours, brute_force(image, fn, 32, 13))
    ident = sliding_window(torch.from_numpy(image), lambda x: x, patch=32, stride=13, batch_size=batch)
    assert np.allclose(ident.numpy()[0], image)


def test_multi_channel_outputs_and_coverage():
    image = torch.rand(64, 70)
    out = sliding_window(image, lambda x: torch.cat([x, x * x], 1), patch=32, stride=10)
    assert out.shape == (2, 64, 70)
    assert torch.allclose(out[0], image) and torch.allclose(out[1], image * image)
    cov = coverage(64, 70, 32, 10)
    assert cov.min() >= 1 and cov[0, 0] == 1 and cov.dtype == np.float32


def test_numpy_and_torch_windows_are_the_same_code():
    rng = np.random.default_rng(3)
    image = rng.random((70, 90)).astype(np.float32)
    fn = lambda b: np.concatenate([b * 2, b ** 2], axis=1)  # noqa: E731
    ours = sliding_window(image, fn, patch=32, stride=11, batch_size=5)
    ref = sliding_window(torch.from_numpy(image), lambda b: torch.cat([b * 2, b ** 2], 1), patch=32, stride=11,
                         batch_size=5)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    assert np.array_equal(ours, ref.numpy())


def test_patch_count_is_the_number_of_patches_the_window_visits():
    """Reference: the patches listed by patch_starts (an image smaller than a patch is padded to one)."""
    from ssimae.core.window import patch_count

    for h, w, stride in [(1, 1, 30), (128, 128, 30), (129, 300, 30), (4096, 4096, 30), (1000, 257, 1), (500, 700, 128)]:
        expected = len(patch_starts(max(h, 128), 128, stride)) * len(patch_starts(max(w, 128), 128, stride))
        assert patch_count(h, w, 128, stride) == expected
