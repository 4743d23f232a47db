"""Built-in demo dataset: real gray textures from scikit-image with synthetic defects.

The dataset mimics the woven-fabric data of Bergmann et al. (VISAPP 2019, Sec. 4.1):
defect-free training images, defect-free test images and test images with *cuts*,
*roughened areas* and *contaminations*, each with a pixel-exact ground-truth mask. It is
written in the MVTec AD layout::

    out/train/good/000.png ...
    out/test/good/000.png ...
    out/test/<type>/000.png ...           type in cut, roughened, contamination
    out/ground_truth/<type>/000_mask.png  uint8, 0 = good, 255 = defect, same size
    out/calibration/good/000.png ...      defect-free, to set thresholds on (not MVTec)
    out/README.txt                        how it was made

Source textures are ``skimage.data.brick()``, ``grass()`` and ``gravel()`` (512 x 512
uint8, shipped with scikit-image, no download). Training crops come from the left columns
of the texture and test crops from the right columns (``split_regions``): the two regions
share no pixel, so no test image overlaps a training image, and both span every row. (A split
by rows would not do: brick is a perspective view whose bricks grow from the top rows to the
bottom ones, so test bricks would be larger than any seen in training and every good test
image would look anomalous at the mortar joints.)

The calibration images are defect-free crops of the *test* region: new good parts from the
same line, disjoint from every training crop (they may share pixels with test crops, as parts
cut from one sheet do). A run's own validation images are a split of the training crops, which
in the left columns overlap each other almost entirely, so they score lower than any new part
and a threshold set on them rejects most good test parts; ``ssimae demo`` therefore sets its
thresholds on ``calibration/good`` (``ssimae calibrate RUN --good DATA/calibration/good``).
The MVTec reader (:func:`ssimae.data.datasets.load_dataset`) reads train/, test/ and
ground_truth/ only, so the extra folder does not change the dataset.

Every image is drawn from its own generator ``numpy.random.default_rng([seed, code,
index])`` (``image_rng``), so image ``i`` does not depend on how many images are made and
the whole dataset is byte-identical for the same arguments.

Defects blend a target image into the clean crop with a weight ``alpha`` that is exactly 0
outside the defect and at least 0.5 inside it (soft inside, hard at the edge); the mask is
``alpha > 0``. Pixels outside the mask are therefore bit-identical to the clean crop.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ssimae.errors import SsimaeError

TEXTURES = ("brick", "grass", "gravel")
DEFAULT_TEXTURE = "brick"
DEFECT_TYPES = ("cut", "roughened", "contamination")
# "good" = defect-free test image; "calibration" = defect-free image of the test region to set
# thresholds on. New kinds go at the end: a kind's position is its generator's code.
KINDS = ("train", "good") + DEFECT_TYPES + ("calibration",)
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
MIN_SIZE = 96  # the largest defect (a 70 px cut, a 35 px stain) must fit with a margin

# Dihedral transforms (number of 90-degree rotations, horizontal flip) a texture allows.
# brick is a perspective view: its rows converge upward, so only the left-right mirror
# looks like the same wall; grass and gravel are isotropic enough for all eight.
_ALL_DIHEDRAL = tuple((k, f) for k in range(4) for f in (False, True))
AUGMENTATIONS = {"brick": ((0, False), (0, True)), "grass": _ALL_DIHEDRAL, "gravel": _ALL_DIHEDRAL}

DEFAULTS = dict(texture=DEFAULT_TEXTURE, size=256, n_train=40, n_test_good=10, n_test_per_type=8, n_calibration=20)
CALIBRATION_DIR = "calibration/good"  # under the dataset folder: the defect-free calibration images
_CLEAN_KINDS = ("train", "good", "calibration")


@dataclass(frozen=True)
class Crop:
    """Where an image comes from: texture rows y0:y0+size, columns x0:x0+size, then
    ``np.rot90(.., k)`` and, if ``flip``, a left-right mirror."""

    y0: int
    x0: int
    size: int
    k: int
    flip: bool

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) in texture pixels, end-exclusive."""
        return self.y0, self.x0, self.y0 + self.size, self.x0 + self.size


def load_texture(texture: str = DEFAULT_TEXTURE) -> np.ndarray:
    """The named scikit-image texture as a (512, 512) uint8 array."""
    if texture not in TEXTURES:
        raise SsimaeError(f"unknown demo texture {texture!r}; choose one of {', '.join(TEXTURES)}")
    import skimage.data

    img = np.asarray(getattr(skimage.data, texture)())
    if img.ndim != 2 or img.dtype != np.uint8:  # pragma: no cover - guards a changed skimage
        raise SsimaeError(f"skimage.data.{texture}() is not a gray uint8 image")
    return img


def split_regions(texture_shape: tuple[int, int], size: int) -> dict[str, tuple[int, int]]:
    """Disjoint column ranges [c0, c1) of the texture for training and test crops.

    The test region is the right ``size`` columns (room for exactly one crop width); the
    training region is everything left of it. Both span all rows."""
    h, w = texture_shape
    if not MIN_SIZE <= size <= min(w // 2, h):
        raise SsimaeError(f"demo image size must be between {MIN_SIZE} and {min(w // 2, h)} px, got {size}")
    return {"train": (0, w - size), "test": (w - size, w)}


def image_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of one image: kind in KINDS, index >= 0."""
    if kind not in _KIND_CODE:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return np.random.default_rng([int(seed), _KIND_CODE[kind], int(index)])


def draw_crop(rng: np.random.Generator, texture_shape: tuple[int, int], size: int, split: str,
              texture: str = DEFAULT_TEXTURE) -> Crop:
    """A random crop box inside the ``split`` ("train" or "test") region plus an allowed
    dihedral transform of ``texture``."""
    c0, c1 = split_regions(texture_shape, size)[split]
    y0 = int(rng.integers(0, texture_shape[0] - size + 1))
    x0 = int(rng.integers(c0, c1 - size + 1))
    augs = AUGMENTATIONS[texture]
    k, flip = augs[int(rng.integers(len(augs)))]
    return Crop(y0, x0, size, k, flip)


def apply_crop(tex: np.ndarray, crop: Crop) -> np.ndarray:
    """Cut ``crop`` out of ``tex`` and transform it: (size, size), dtype of ``tex``."""
    y0, x0, y1, x1 = crop.box
    out = np.rot90(tex[y0:y1, x0:x1], crop.k)
    if crop.flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- defects


def _blend(img: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """img * (1 - alpha) + target * alpha, float; exactly ``img`` where alpha == 0. img and
    target (H, W) or (H, W, C); alpha (H, W), the same for every channel."""
    out = img.copy()
    m = alpha > 0
    a = alpha[m].reshape(-1, *[1] * (img.ndim - 2))
    out[m] = img[m] * (1 - a) + np.clip(target[m], 0, 255) * a
    return out


def _edge_alpha(inside: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Blend weight from a normalised depth (0 at the edge, 1 at the core): 0.5 at the edge
    rising linearly to 1, exactly 0 outside. Shapes (H, W) -> (H, W) in {0} u [0.5, 1]."""
    return np.where(inside, 0.5 + 0.5 * np.clip(depth, 0.0, 1.0), 0.0)


def _signed_offset(rng: np.random.Generator, level: float, lo: float, hi: float, p_dark: float) -> float:
    """An intensity offset of magnitude U(lo, hi), dark with probability ``p_dark`` unless the
    local level ``level`` (0..255) leaves too little room on that side."""
    mag = rng.uniform(lo, hi)
    dark = rng.random() < p_dark
    if dark and level - mag < 10:
        dark = False
    elif not dark and level + mag > 245:
        dark = True
    return -mag if dark else mag


def _blob(rng: np.random.Generator, size: int, dmin: float, dmax: float, irregular: float):
    """A random irregular ellipse fully inside a (size, size) image.

    Diameters U(dmin, dmax), random orientation; the radius is modulated by harmonics 2-4
    of relative amplitude up to ``irregular``. Returns (inside bool (H, W), rho (H, W)
    = normalised radius, 0 at the centre and 1 on the boundary)."""
    a, b = rng.uniform(dmin, dmax, size=2) / 2
    theta = rng.uniform(0, np.pi)
    amps = rng.uniform(-irregular, irregular, size=3) / np.arange(1, 4)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    reach = max(a, b) * (1 + np.abs(amps).sum())
    margin = reach + 2
    cy, cx = rng.uniform(margin, size - margin, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(v / b, u / a)
    scale = 1 + sum(amps[i] * np.cos((i + 2) * phi + phases[i]) for i in range(3))
    rho = np.hypot(u / a, v / b) / scale
    return rho < 1, rho


def _curve_points(rng: np.random.Generator, size: int, length: float, margin: float) -> np.ndarray:
    """Densely sampled (N, 2) (y, x) points of a random arc of total ``length`` px with
    random direction, constant curvature (total turn up to ~70 degrees) and a slight
    wiggle, shifted so every point lies at least ``margin`` px inside the image."""
    n = max(int(length * 4), 8)
    t = np.linspace(0.0, length, n)
    turn = rng.uniform(-1.2, 1.2)
    wiggle_amp, wiggle_freq, wiggle_ph = rng.uniform(0, 0.25), rng.uniform(1, 3), rng.uniform(0, 2 * np.pi)
    heading = rng.uniform(0, 2 * np.pi) + turn * t / length \
        + wiggle_amp * np.sin(2 * np.pi * wiggle_freq * t / length + wiggle_ph)
    step = length / (n - 1)
    pts = np.cumsum(np.stack([np.sin(heading), np.cos(heading)], axis=1) * step, axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    shift = np.array([rng.uniform(margin - lo[i], size - margin - hi[i]) for i in range(2)])
    return pts + shift


def _distance_to_points(size: int, pts: np.ndarray, pad: float) -> np.ndarray:
    """(size, size) distance of every pixel centre to the nearest point of ``pts`` (N, 2);
    pixels farther than ``pad`` from the points' bounding box get +inf."""
    dist = np.full((size, size), np.inf)
    y0, x0 = np.maximum(np.floor(pts.min(axis=0) - pad).astype(int), 0)
    y1, x1 = np.minimum(np.ceil(pts.max(axis=0) + pad).astype(int) + 1, size)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1)
    d2 = ((grid[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    dist[y0:y1, x0:x1] = np.sqrt(d2).reshape(yy.shape)
    return dist


def _cut(img: np.ndarray, rng: np.random.Generator):
    """Cut / scratch: a curved line 2-4 px wide and 25-70 px long, U(45, 80) gray levels
    darker (60 %) or brighter than the local mean, keeping 30 % of the texture's contrast.
    Returns (target (H, W) float, alpha (H, W))."""
    size = img.shape[0]
    width = rng.uniform(2.0, 4.0)
    r = width / 2
    pts = _curve_points(rng, size, rng.uniform(25, 70), margin=r + 2)
    dist = _distance_to_points(size, pts, pad=r + 1)
    inside = dist < r
    alpha = _edge_alpha(inside, (r - dist) / max(r - 0.5, 0.5))
    local = ndimage.gaussian_filter(img, 4.0)
    level = float(local[inside].mean())
    offset = _signed_offset(rng, level, 45, 80, p_dark=0.6)
    target = local + offset + 0.3 * (img - local) + rng.normal(0, 3, img.shape)
    return target, alpha


def _roughened(img: np.ndarray, rng: np.random.Generator):
    """Roughened area: an ellipse of 15-40 px whose texture is displaced (random warp of
    3-7 px) and overlaid with zero-mean high-frequency grain of U(14, 26) gray levels, so
    the local mean stays while the structure changes. Returns (target, alpha)."""
    size = img.shape[0]
    inside, rho = _blob(rng, size, 15, 40, irregular=0.12)
    amp = rng.uniform(3, 7)
    disp = [ndimage.gaussian_filter(rng.standard_normal(img.shape), 1.5) for _ in range(2)]
    disp = [d / (d.std() + 1e-12) * amp for d in disp]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    warped = ndimage.map_coordinates(img, [yy + disp[0], xx + disp[1]], order=1, mode="reflect")
    grain = ndimage.gaussian_filter(rng.standard_normal(img.shape), rng.uniform(0.5, 1.0))
    grain *= rng.uniform(14, 26) / (grain.std() + 1e-12)
    target = warped + grain
    alpha = _edge_alpha(inside, (1 - rho) / 0.25)
    return target, alpha


def _contamination(img: np.ndarray, rng: np.random.Generator):
    """Contamination / stain: an irregular ellipse of 10-35 px, U(40, 80) gray levels darker
    (65 %) or brighter than the local mean with a blotchy low-frequency modulation, texture
    smoothed (sigma 2) and its contrast scaled by U(0.2, 0.5), plus a fine grit of the dirt
    itself (6-12 gray levels std, so that SSIM sees it on flat texture too); soft towards the
    rim (alpha falls from 1 at half radius to 0.5 at the edge). Returns (target, alpha)."""
    size = img.shape[0]
    inside, rho = _blob(rng, size, 10, 35, irregular=0.3)
    local = ndimage.gaussian_filter(img, 6.0)
    smooth = ndimage.gaussian_filter(img, 2.0)
    level = float(local[inside].mean())
    offset = _signed_offset(rng, level, 40, 80, p_dark=0.65)
    blotch = ndimage.gaussian_filter(rng.standard_normal(img.shape), 4.0)
    blotch = 0.85 + 0.15 * blotch / (np.abs(blotch).max() + 1e-12)
    grit = ndimage.gaussian_filter(rng.standard_normal(img.shape), 1.2)
    grit *= rng.uniform(6, 12) / (grit.std() + 1e-12)
    target = local + rng.uniform(0.2, 0.5) * (smooth - local) + offset * blotch + grit
    alpha = _edge_alpha(inside, (1 - rho) / 0.5)
    return target, alpha


_RECIPES = {"cut": _cut, "roughened": _roughened, "contamination": _contamination}


def add_defects(clean: np.ndarray, defect_type: str, rng: np.random.Generator,
                n_defects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Put 1-2 (or ``n_defects``) defects of ``defect_type`` into ``clean``.

    clean: (H, W) uint8, square. Returns (defective (H, W) uint8, mask (H, W) bool). The
    defects do not touch each other (a later one is redrawn up to 20 times if it comes
    within 3 px of an earlier one). Pixels outside the mask equal ``clean`` exactly."""
    if defect_type not in _RECIPES:
        raise ValueError(f"defect_type must be one of {DEFECT_TYPES}, got {defect_type!r}")
    return _place_defects(clean.astype(np.float64), _RECIPES[defect_type], rng, n_defects)


def _place_defects(img: np.ndarray, recipe, rng: np.random.Generator,
                   n_defects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """1-2 (or ``n_defects``) defects of ``recipe(img, rng) -> (target, alpha)`` blended into
    float ``img`` ((H, W) or (H, W, 3), 0..255), each redrawn up to 20 times until it keeps
    3 px from the earlier ones. Returns (uint8 image, mask bool (H, W))."""
    n = int(rng.integers(1, 3)) if n_defects is None else int(n_defects)
    mask = np.zeros(img.shape[:2], dtype=bool)
    for _ in range(n):
        for _attempt in range(20):
            target, alpha = recipe(img, rng)
            if not (ndimage.binary_dilation(alpha > 0, iterations=3) & mask).any():
                break
        img = _blend(img, target, alpha)
        mask |= alpha > 0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


# --------------------------------------------------------------------------- dataset


def demo_sample(kind: str, index: int, seed: int = 0, texture: str = DEFAULT_TEXTURE,
                size: int = 256, tex: np.ndarray | None = None):
    """One image of the demo dataset, as ``make_demo_data`` writes it.

    kind: "train", "good" (defect-free test image), "calibration" (defect-free image of the
    test region) or a defect type. Returns (clean uint8 (size, size), image uint8 (size, size),
    mask bool (size, size), crop ``Crop``); for the defect-free kinds the image is the clean
    crop and the mask is all False."""
    tex = load_texture(texture) if tex is None else tex
    rng = image_rng(seed, kind, index)
    crop = draw_crop(rng, tex.shape, size, "train" if kind == "train" else "test", texture)
    clean = apply_crop(tex, crop)
    if kind in _CLEAN_KINDS:
        return clean, clean.copy(), np.zeros(clean.shape, dtype=bool), crop
    defective, mask = add_defects(clean, kind, rng)
    return clean, defective, mask, crop


def _save_png(path: Path, arr: np.ndarray) -> None:
    """Write a (H, W) uint8 array as an 8-bit gray PNG (no metadata, so bytes are stable)."""
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L").save(path, format="PNG")


_TEXTURE_NOTES = {
    "brick": "a perspective photo of a brick wall: large smooth bricks separated by thin "
             "mortar lines, i.e. smooth-ish but clearly structured, which a small "
             "autoencoder reconstructs well within minutes (default)",
    "grass": "a photo of grass: dense, high-frequency blades; hard to reconstruct, expect "
             "a noisy residual",
    "gravel": "a photo of gravel: many small stones with strong shading; hard to "
              "reconstruct, expect a noisy residual",
}


def _readme(out: Path, texture: str, seed: int, size: int, counts: dict, regions: dict,
            mask_pixels: dict) -> str:
    """Text of README.txt."""
    augs = ", ".join(f"rot90 x{k}{' + mirror' if f else ''}" for k, f in AUGMENTATIONS[texture])
    test_cols = f"{regions['test'][0]}-{regions['test'][1] - 1}"
    lines = [
        "ssimae demo dataset (synthetic defects on a real texture), MVTec AD layout",
        "",
        f"made by: ssimae.data.demo_data.make_demo_data(out_dir, seed={seed}, texture={texture!r}, "
        f"size={size}, n_train={counts['train']}, n_test_good={counts['good']}, "
        f"n_test_per_type={counts['cut']}, n_calibration={counts['calibration']})",
        f"source:  skimage.data.{texture}(), 512 x 512 gray uint8 - {_TEXTURE_NOTES[texture]}",
        f"images:  {size} x {size} px, 8-bit gray PNG, cropped at native resolution",
        f"split:   training crops lie in texture columns {regions['train'][0]}-{regions['train'][1] - 1}, "
        f"test crops in columns {regions['test'][0]}-{regions['test'][1] - 1} (no pixel shared); "
        "all rows; crop position uniform at random",
        f"augment: one of [{augs}] per image, uniform at random",
        "random:  image i of kind K is drawn from numpy.random.default_rng([seed, code(K), i]),"
        f" K in {', '.join(KINDS)} (codes 0-{len(KINDS) - 1})",
        "",
        "counts:",
        f"  train/good                 {counts['train']}",
        f"  test/good                  {counts['good']}",
    ]
    for t in DEFECT_TYPES:
        lines.append(f"  test/{t:<22}{counts[t]}   (defect pixels: {mask_pixels[t]})")
    lines += [
        f"  {CALIBRATION_DIR:<27}{counts['calibration']}   (defect-free, not part of the MVTec layout)",
        "",
        f"calibration/good: defect-free crops of the test region (columns {test_cols}), to set a",
        "  run's thresholds on new good parts: ssimae calibrate RUN --good DATA/calibration/good",
        "  (ssimae demo does). They never share a pixel with a training crop; they may share",
        "  pixels with test crops (new parts from the same line). A run's own validation images",
        "  are training crops, which overlap each other almost entirely, so they score lower than",
        "  new parts and are no basis for a threshold.",
        "",
        "defects (1-2 per image, all of the image's type, not touching, fully inside):",
        "  cut            curved line (constant curvature + slight wiggle), 2-4 px wide, 25-70 px",
        "                 long, 45-80 gray levels darker (60 %) or brighter than the local mean,",
        "                 30 % of the texture contrast kept",
        "  roughened      irregular ellipse, 15-40 px: texture randomly displaced by 3-7 px and",
        "                 overlaid with zero-mean high-frequency grain (14-26 gray levels std);",
        "                 the mean stays, the structure changes",
        "  contamination  irregular blob (ellipse 10-35 px, radius modulated by harmonics 2-4),",
        "                 40-80 gray levels darker (65 %) or brighter, blotchy, texture smoothed",
        "                 and its contrast reduced to 20-50 %, with a fine grit of its own (6-12",
        "                 gray levels std), fading towards the rim",
        "",
        "ground truth: ground_truth/<type>/NNN_mask.png, 255 = defect. A defect is blended in",
        "with a weight that is >= 0.5 inside the mask and exactly 0 outside it, so every pixel",
        "outside the mask equals the clean texture crop.",
        "",
    ]
    return "\n".join(lines)


def _check_counts(**counts) -> None:
    """SsimaeError unless every count is between 0 and 1000."""
    for name, n in counts.items():
        if int(n) < 0 or int(n) > 1000:
            raise SsimaeError(f"{name} must be between 0 and 1000, got {n}")


def _folder(kind: str) -> str:
    """The image folder of ``kind`` under the dataset folder."""
    return {"train": "train/good", "calibration": CALIBRATION_DIR}.get(kind, f"test/{kind}")


def make_demo_data(out_dir: str | os.PathLike, seed: int = 0, texture: str = DEFAULT_TEXTURE,
                   size: int = DEFAULTS["size"], n_train: int = DEFAULTS["n_train"],
                   n_test_good: int = DEFAULTS["n_test_good"],
                   n_test_per_type: int = DEFAULTS["n_test_per_type"],
                   overwrite: bool = False, n_calibration: int = DEFAULTS["n_calibration"]) -> Path:
    """Write the demo dataset to ``out_dir`` (MVTec AD layout plus ``calibration/good``, see
    the module docstring).

    Defaults (256 px, 40 train, 10 good test, 8 per defect type, 20 calibration images) suit
    a CPU demo; e.g. ``size=160, n_train=3, n_test_good=2, n_test_per_type=2,
    n_calibration=2`` is a tiny one for tests (``n_calibration=0``: no calibration folder).
    An existing non-empty ``out_dir`` is refused unless ``overwrite``; then its train/,
    test/, ground_truth/, calibration/ and README.txt are replaced. Returns ``Path(out_dir)``."""
    out = Path(out_dir)
    _check_counts(n_train=n_train, n_test_good=n_test_good, n_test_per_type=n_test_per_type,
                  n_calibration=n_calibration)
    if int(seed) < 0:
        raise SsimaeError(f"seed must be >= 0, got {seed}")
    tex = load_texture(texture)
    regions = split_regions(tex.shape, size)
    if out.exists() and not out.is_dir():
        raise SsimaeError("exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SsimaeError("folder is not empty (pass overwrite to replace the demo data)", out)
        for sub in ("train", "test", "ground_truth", CALIBRATION_DIR.split("/")[0]):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        (out / "README.txt").unlink(missing_ok=True)

    counts = {"train": n_train, "good": n_test_good, **{t: n_test_per_type for t in DEFECT_TYPES},
              "calibration": n_calibration}
    mask_pixels = {t: 0 for t in DEFECT_TYPES}
    for kind, n in counts.items():
        if kind == "calibration" and not n:
            continue
        img_dir = out / _folder(kind)
        img_dir.mkdir(parents=True, exist_ok=True)
        if kind in DEFECT_TYPES:
            (out / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _, image, mask, _ = demo_sample(kind, i, seed, texture, size, tex=tex)
            _save_png(img_dir / f"{i:03d}.png", image)
            if kind in DEFECT_TYPES:
                _save_png(out / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
                mask_pixels[kind] += int(mask.sum())
    (out / "README.txt").write_text(_readme(out, texture, seed, size, counts, regions, mask_pixels))
    return out


# --------------------------------------------------------------------------- color variant
#
# A colour dataset for runs with --color (beyond the paper, which is gray-only): the same
# crops, tinted brick-red, with two defect types. "cut" is the gray cut above in all three
# channels (visible in gray too); "hue" is an isoluminant stain: a blob whose chroma moves
# along a direction with zero ITU-R 601-2 luma, so a gray reading of the image barely sees
# it (only where a channel clips) while an RGB reading does.

COLOR_DEFECT_TYPES = ("cut", "hue")
COLOR_TINT = (1.15, 0.95, 0.75)  # R, G, B gain of the clean image (luma gain 0.987)
HUE_DIRECTION = (1.0, -0.7, (0.587 * 0.7 - 0.299) / 0.114)  # zero luma: 0.299 r + 0.587 g + 0.114 b = 0


def tint(gray: np.ndarray) -> np.ndarray:
    """A gray (H, W) uint8 crop as a brick-red RGB float (H, W, 3) image in 0..255."""
    return np.clip(gray.astype(np.float64)[..., None] * np.asarray(COLOR_TINT), 0, 255)


def _hue_stain(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Isoluminant stain: an irregular ellipse of 20-45 px whose colour moves by U(35, 60)
    levels along ``HUE_DIRECTION`` (sign at random), soft towards the rim. Returns
    (target (H, W, 3) float, alpha (H, W))."""
    inside, rho = _blob(rng, rgb.shape[0], 20, 45, irregular=0.2)
    direction = np.asarray(HUE_DIRECTION) / np.abs(HUE_DIRECTION).max()
    shift = rng.uniform(35, 60) * (1 if rng.random() < 0.5 else -1)
    return rgb + shift * direction, _edge_alpha(inside, (1 - rho) / 0.5)


def color_sample(kind: str, index: int, seed: int = 0, size: int = 256, tex: np.ndarray | None = None):
    """One image of the colour dataset -> (image uint8 (size, size, 3), mask bool (size, size)).

    kind: "train", "good", "calibration" or one of COLOR_DEFECT_TYPES. The crop (and, for "cut", the defect)
    is drawn as :func:`demo_sample` draws it, so the colour set is the gray set tinted, with
    the "hue" type in place of the gray defect types."""
    gray_kind = {"hue": "roughened"}.get(kind, kind)  # the crop's generator (a kind code of KINDS)
    tex = load_texture(DEFAULT_TEXTURE) if tex is None else tex
    if kind in ("train", "good", "calibration", "cut"):
        _, image, mask, _ = demo_sample(gray_kind, index, seed, DEFAULT_TEXTURE, size, tex=tex)
        return np.clip(np.rint(tint(image)), 0, 255).astype(np.uint8), mask
    if kind != "hue":
        raise ValueError(f"kind must be train, good, calibration or one of {COLOR_DEFECT_TYPES}, got {kind!r}")
    rng = image_rng(seed, gray_kind, index)
    crop = draw_crop(rng, tex.shape, size, "test", DEFAULT_TEXTURE)
    return _place_defects(tint(apply_crop(tex, crop)), _hue_stain, rng)


def make_color_demo_data(out_dir: str | os.PathLike, seed: int = 0, size: int = DEFAULTS["size"],
                         n_train: int = DEFAULTS["n_train"], n_test_good: int = DEFAULTS["n_test_good"],
                         n_test_per_type: int = DEFAULTS["n_test_per_type"],
                         n_calibration: int = DEFAULTS["n_calibration"]) -> Path:
    """Write the colour dataset (MVTec AD layout, RGB PNGs, types ``COLOR_DEFECT_TYPES``, plus
    the calibration images of :func:`make_demo_data`, tinted, in ``calibration/good``) to
    ``out_dir``, which must not exist or be empty. Returns ``Path(out_dir)``."""
    out = Path(out_dir)
    _check_counts(n_train=n_train, n_test_good=n_test_good, n_test_per_type=n_test_per_type,
                  n_calibration=n_calibration)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SsimaeError("exists and is not an empty folder", out)
    tex = load_texture(DEFAULT_TEXTURE)
    counts = {"train": n_train, "good": n_test_good, **{t: n_test_per_type for t in COLOR_DEFECT_TYPES},
              "calibration": n_calibration}
    for kind, n in counts.items():
        if kind == "calibration" and not n:
            continue
        img_dir = out / _folder(kind)
        img_dir.mkdir(parents=True, exist_ok=True)
        for i in range(int(n)):
            image, mask = color_sample(kind, i, seed, size, tex)
            Image.fromarray(image, mode="RGB").save(img_dir / f"{i:03d}.png", format="PNG")
            if kind in COLOR_DEFECT_TYPES:
                (out / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                _save_png(out / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    (out / "README.txt").write_text(
        "ssimae colour demo dataset: skimage.data.brick() crops tinted brick-red "
        f"(RGB gains {COLOR_TINT}), MVTec AD layout, made by ssimae.data.demo_data.make_color_demo_data("
        f"out_dir, seed={seed}, size={size}, n_train={n_train}, n_test_good={n_test_good}, "
        f"n_test_per_type={n_test_per_type}, n_calibration={n_calibration}).\n"
        "defects: cut = the gray demo's cut in all channels; hue = an isoluminant stain (20-45 px blob,\n"
        "colour moved by 35-60 levels along a direction of zero ITU-R 601-2 luma), nearly invisible in gray.\n"
        f"calibration: {CALIBRATION_DIR} holds {n_calibration} defect-free crops of the test region (the gray\n"
        "demo's calibration images, tinted), to set a run's thresholds on new good parts (ssimae calibrate\n"
        "RUN --good DATA/calibration/good; ssimae demo does): they never share a pixel with a training crop,\n"
        "and may share pixels with test crops (new parts from the same line).\n")
    return out
