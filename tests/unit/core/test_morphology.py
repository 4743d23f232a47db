"""Tests of ssimae.core.morphology against hand-computed footprints and the set definition
of an opening (union of all translates of the disk that fit in the set)."""
import numpy as np
import pytest
from skimage.morphology import opening as sk_opening

from tests.helpers.reference import brute_opening
from ssimae.core.morphology import (OPENING_DIAMETER, binary_opening, disk, gray_opening,
                               segment)


def test_paper_diameter():
    assert OPENING_DIAMETER == 4


def test_disk_exact_pixels():
    expected4 = np.array([[0, 1, 1, 0],
                          [1, 1, 1, 1],
                          [1, 1, 1, 1],
                          [0, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(disk(4), expected4)
    assert disk(4).sum() == 12
    np.testing.assert_array_equal(disk(1), np.ones((1, 1), bool))
    np.testing.assert_array_equal(disk(2), np.ones((2, 2), bool))
    np.testing.assert_array_equal(disk(3), np.ones((3, 3), bool))  # corner dist^2 2 <= 2.25
    d5 = np.ones((5, 5), bool)
    d5[[0, 0, 4, 4], [0, 4, 0, 4]] = False  # corner dist^2 8 > 6.25, (0,1): 5 <= 6.25
    np.testing.assert_array_equal(disk(5), d5)
    assert disk(0).shape == (0, 0)


@pytest.mark.parametrize("bad", [-1, 2.5])
def test_disk_rejects_bad_diameter(bad):
    with pytest.raises(ValueError):
        disk(bad)
    with pytest.raises(ValueError):
        gray_opening(np.zeros((5, 5)), bad)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_gray_opening_is_opening_at_every_threshold(d):
    """Threshold decomposition: gray opening > t == set opening of (map > t), for all t,
    on random maps with ties, non-square, defects touching the border."""
    rng = np.random.default_rng(d)
    for shape in [(9, 13), (12, 8), (7, 7)]:
        f = rng.integers(0, 6, shape).astype(np.float32)
        g = gray_opening(f, d)
        assert g.dtype == f.dtype and g.shape == f.shape
        assert np.all(g <= f)
        for t in np.r_[np.unique(f) - 0.5, 10.0]:
            expected = brute_opening(f > t, d)
            np.testing.assert_array_equal(g > t, expected)
            np.testing.assert_array_equal(binary_opening(f > t, d), expected)
            np.testing.assert_array_equal(segment(f, t, d), expected)


def test_hand_cases_diameter_4():
    x = np.zeros((12, 12), bool)
    x[4:8, 4:8] = True  # 4x4 square: only one translate fits -> the disk itself
    expected = np.zeros_like(x)
    expected[4:8, 4:8] = disk(4)
    np.testing.assert_array_equal(binary_opening(x, 4), expected)
    y = np.zeros((12, 12), bool)
    y[5:7, 5:7] = True  # 2x2 blob inside: removed
    assert not binary_opening(y, 4).any()
    z = np.zeros((12, 12), bool)
    z[:2, :2] = True  # 2x2 blob in the corner: the part of one translate survives
    expected = np.zeros_like(z)
    expected[0, 0] = expected[0, 1] = expected[1, 0] = True
    np.testing.assert_array_equal(binary_opening(z, 4), expected)
    s = np.zeros((12, 12), bool)
    s[:, :2] = True  # 2-pixel stripe along the border survives whole (outside ignored)
    np.testing.assert_array_equal(binary_opening(s, 4), s)


@pytest.mark.parametrize("d", [3, 5])
def test_interior_matches_skimage_for_odd_disks(d):
    """Away from the border (where conventions differ) scikit-image agrees."""
    rng = np.random.default_rng(7)
    f = rng.random((40, 37))
    ref = sk_opening(f, disk(d), mode="ignore")
    m = d
    np.testing.assert_allclose(gray_opening(f, d)[m:-m, m:-m], ref[m:-m, m:-m])


def test_translation_invariance_even_disk():
    """No origin: shifting the input shifts the output (away from the border)."""
    rng = np.random.default_rng(3)
    f = rng.random((30, 30))
    g = gray_opening(f, 4)
    g_shift = gray_opening(np.roll(f, (1, 2), axis=(0, 1)), 4)
    np.testing.assert_array_equal(g_shift[6:-6, 6:-6], np.roll(g, (1, 2), (0, 1))[6:-6, 6:-6])


def test_diameter_zero_is_identity_and_one_is_identity():
    rng = np.random.default_rng(0)
    f = rng.random((6, 5))
    assert gray_opening(f, 0) is f
    np.testing.assert_array_equal(gray_opening(f, 1), f)
    m = f > 0.5
    np.testing.assert_array_equal(binary_opening(m, 0), m)
    np.testing.assert_array_equal(segment(f, 0.5, 0), m)


def test_integer_maps_and_shape_errors():
    f = np.zeros((10, 10), np.uint8)
    f[2:7, 2:7] = 200
    np.testing.assert_array_equal(gray_opening(f, 4) > 100, brute_opening(f > 100, 4))
    with pytest.raises(ValueError):
        gray_opening(np.zeros((2, 3, 4)))
