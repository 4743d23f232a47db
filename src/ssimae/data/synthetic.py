"""Synthetic anomalies for training a segmentation head (DRAEM; beyond the paper).

Zavrtanik, Kristan and Skočaj, "DRAEM - A discriminatively trained reconstruction embedding
for surface anomaly detection", ICCV 2021, Sec. 3.3: a Perlin-noise mask M cut out of a
defect-free image I is filled with an anomaly texture A,

    I_a = (1 - M) * I + (1 - beta) * (M * A) + beta * (M * I),   beta ~ U[0, beta_max],

so pixels outside M are unchanged and pixels inside M change (toward A). DRAEM draws A
from the Describable Textures Dataset; nothing can be downloaded here, so A comes from the
images that ship with scikit-image (:data:`SOURCE_IMAGES`) and from procedural Perlin
textures, cropped, resized, turned and rescaled in contrast at random.

Torch-free (numpy); every draw comes from the generator passed in.
"""
from __future__ import annotations

import numpy as np

# 2D gradient noise (Perlin, "Improving noise", SIGGRAPH 2002): the quintic fade curve.
def fade(t: np.ndarray) -> np.ndarray:
    """6 t^5 - 15 t^4 + 10 t^3: 0 and 1 at t = 0 and 1, with zero first and second derivatives there."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2D Perlin gradient noise (H, W) in about [-0.71, 0.71], ``res`` = (ry, rx) lattice cells
    over the image (shape divisible by res is not needed). A unit gradient g is drawn at
    every lattice point; at pixel p in the cell with corners c the noise is the fade-weighted
    bilinear blend of the four dot products g_c . (p - c), p in lattice units."""
    h, w = shape
    ry, rx = res
    angles = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)  # (ry+1, rx+1, 2): (gy, gx)
    y = (np.arange(h) + 0.5) * ry / h
    x = (np.arange(w) + 0.5) * rx / w
    y0, x0 = np.minimum(y.astype(int), ry - 1), np.minimum(x.astype(int), rx - 1)
    fy, fx = y - y0, x - x0
    yy0, xx0 = np.meshgrid(y0, x0, indexing="ij")
    fyy, fxx = np.meshgrid(fy, fx, indexing="ij")

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[yy0 + dy, xx0 + dx]
        return g[..., 0] * (fyy - dy) + g[..., 1] * (fxx - dx)

    uy, ux = fade(fyy), fade(fxx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return top * (1 - uy) + bottom * uy


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator, max_log2: int = 4,
                threshold: float = 0.5, octaves: bool = False) -> np.ndarray:
    """A DRAEM anomaly mask (H, W) bool: Perlin noise at a random lattice of 2^a x 2^b cells
    (a, b uniform in [0, max_log2]), scaled to [-1, 1] by its own maximum magnitude, above
    ``threshold``; may be empty."""
    a, b = rng.integers(0, max_log2 + 1, 2)
    n = perlin_noise(shape, (2 ** int(a), 2 ** int(b)), rng)
    return n / max(np.abs(n).max(), 1e-12) > threshold


SOURCE_IMAGES = ("grass", "gravel", "brick", "camera", "moon", "coins", "text", "page", "clock", "cell")


def source_textures(names=SOURCE_IMAGES) -> list[np.ndarray]:
    """Gray float32 images in [0, 1] that ship with scikit-image (no download)."""
    import skimage.data

    out = []
    for n in names:
        img = np.asarray(getattr(skimage.data, n)(), dtype=np.float32)
        out.append(img / 255.0)
    return out


def anomaly_texture(shape: tuple[int, int], rng: np.random.Generator, sources: list[np.ndarray]) -> np.ndarray:
    """A random anomaly texture (H, W) float32 in [0, 1]: with probability 1/3 procedural
    Perlin noise, else a random crop of a source image; then a random 90-degree turn, flip,
    and contrast / brightness change."""
    h, w = shape
    if not sources or rng.random() < 1 / 3:
        res = tuple(int(2 ** rng.integers(1, 6)) for _ in range(2))
        t = perlin_noise((h, w), res, rng)
        t = (t - t.min()) / max(np.ptp(t), 1e-12)
    else:
        src = sources[int(rng.integers(len(sources)))]
        scale = rng.uniform(0.5, 2.0)
        ch, cw = min(src.shape[0], max(4, int(h * scale))), min(src.shape[1], max(4, int(w * scale)))
        top, left = rng.integers(0, src.shape[0] - ch + 1), rng.integers(0, src.shape[1] - cw + 1)
        crop = src[top:top + ch, left:left + cw]
        rows = np.minimum((np.arange(h) * ch / h).astype(int), ch - 1)  # nearest-neighbour resize
        cols = np.minimum((np.arange(w) * cw / w).astype(int), cw - 1)
        t = crop[rows][:, cols]
    if h == w:
        t = np.rot90(t, int(rng.integers(4)))
    if rng.random() < 0.5:
        t = t[:, ::-1]
    gain, bias = rng.uniform(0.5, 1.5), rng.uniform(-0.3, 0.3)
    return np.clip((t - 0.5) * gain + 0.5 + bias, 0, 1).astype(np.float32)


def add_anomaly(image: np.ndarray, rng: np.random.Generator, sources: list[np.ndarray], p_anomaly: float = 0.5,
                beta_max: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous image, mask) from a defect-free (H, W) float image in [0, 1], DRAEM's rule
    (module docstring): with probability 1 - ``p_anomaly`` the image is returned unchanged
    with an empty mask. Pixels outside the mask are bit-identical to ``image``; the mask
    holds exactly the pixels whose value the blend may change."""
    mask = np.zeros(image.shape, bool)
    if rng.random() < p_anomaly:
        mask = perlin_mask(image.shape, rng)
    if not mask.any():
        return image.copy(), mask
    texture = anomaly_texture(image.shape, rng, sources)
    beta = rng.uniform(0, beta_max)
    out = image.copy()
    out[mask] = (1 - beta) * texture[mask] + beta * image[mask]
    return out, mask


# --- anomalies that look like real defects on objects and textures --------------------------------
# DRAEM's Perlin-shaped foreign textures (above) teach a segmentation head what a *foreign*
# texture looks like; real defects on objects are often the part's own material in the wrong
# place (a piece of another part, a shifted print) or texture that is missing (a worn, frayed
# or smoothed region). Two generators for those, with the same contract as add_anomaly: the
# mask holds exactly the pixels that may change, every other pixel is bit-identical.

ANOMALY_KINDS = ("perlin", "cutpaste", "removal", "mixed", "perlin-removal")  # ReconParams.anomalies


def cut_paste(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, min_side: float = 0.1,
              max_side: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous image, mask): an elliptical piece of ``donor`` (another defect-free image
    of the same shape (H, W), or ``image`` itself) cut at one place and pasted at another,
    its mean brightness moved toward the target region's by a random share, blended in with
    opacity 1 - beta, beta ~ U[0, 0.5).

    After NSA (Schlüter, Tan, Hou, Kainz, "Natural Synthetic Anomalies for Self-supervised
    Anomaly Detection and Localization", ECCV 2022): patches of other defect-free images
    pasted elsewhere make anomalies of the part's own material, which a head trained only on
    foreign textures misses; NSA's Poisson blending is replaced here by the brightness shift
    and the opacity (no linear solve per patch). Side lengths of the piece: a share in
    [min_side, max_side] of the image's, drawn for each axis."""
    h, w = image.shape
    ph = max(2, int(round(h * rng.uniform(min_side, max_side))))
    pw = max(2, int(round(w * rng.uniform(min_side, max_side))))
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))  # where it is cut
    ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))  # where it goes
    yy, xx = np.mgrid[0:ph, 0:pw]
    ellipse = ((yy + 0.5 - ph / 2) / (ph / 2)) ** 2 + ((xx + 0.5 - pw / 2) / (pw / 2)) ** 2 <= 1.0
    piece = donor[sy:sy + ph, sx:sx + pw].astype(np.float32)
    target = image[ty:ty + ph, tx:tx + pw]
    shift = rng.uniform(0, 1) * (float(target[ellipse].mean()) - float(piece[ellipse].mean()))
    beta = rng.uniform(0, 0.5)
    mask = np.zeros((h, w), bool)
    mask[ty:ty + ph, tx:tx + pw] = ellipse
    out = image.copy()
    pasted = np.clip(piece + shift, 0, 1)
    out[mask] = ((1 - beta) * pasted[ellipse] + beta * target[ellipse]).astype(image.dtype)
    return out, mask


def remove_texture(image: np.ndarray, rng: np.random.Generator, min_sigma: float = 2.0,
                   max_sigma: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous image, mask): the texture inside a Perlin-shaped region removed, the region
    replaced by the image blurred with a Gaussian of sigma ~ U[min_sigma, max_sigma] (half
    of the time) or flattened to the region's mean brightness, blended with opacity
    1 - beta, beta ~ U[0, 0.3). For defects that are *missing* texture (fray, wear, a
    smoothed or polished region), which a head trained on added textures ranks low. The mask
    may be empty (then the image is returned unchanged)."""
    from scipy import ndimage as ndi

    mask = perlin_mask(image.shape, rng)
    if not mask.any():
        return image.copy(), mask
    if rng.random() < 0.5:
        fill = ndi.gaussian_filter(image.astype(np.float64), rng.uniform(min_sigma, max_sigma), mode="reflect")[mask]
    else:
        fill = np.full(int(mask.sum()), float(image[mask].mean()))
    beta = rng.uniform(0, 0.3)
    out = image.copy()
    out[mask] = ((1 - beta) * fill + beta * image[mask]).astype(image.dtype)
    return out, mask


def make_anomaly(image: np.ndarray, donor: np.ndarray, rng: np.random.Generator, sources: list[np.ndarray],
                 kind: str = "perlin", p_anomaly: float = 0.5, beta_max: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous image, mask) of one (H, W) defect-free image in [0, 1] by generator ``kind``
    (:data:`ANOMALY_KINDS`): "perlin" is DRAEM's :func:`add_anomaly` exactly (the same draws);
    "cutpaste" :func:`cut_paste` (``donor``: another defect-free image of the same shape);
    "removal" :func:`remove_texture`; "mixed" one of the three, uniformly; "perlin-removal"
    DRAEM's or a removal, equally likely. With probability 1 - ``p_anomaly`` the image is
    returned unchanged with an empty mask."""
    if kind not in ANOMALY_KINDS:
        raise ValueError(f"unknown anomaly kind {kind!r}; choose from {', '.join(ANOMALY_KINDS)}")
    if kind == "perlin":
        return add_anomaly(image, rng, sources, p_anomaly, beta_max)
    if rng.random() >= p_anomaly:
        return image.copy(), np.zeros(image.shape, bool)
    if kind == "mixed":
        kind = ANOMALY_KINDS[int(rng.integers(3))]
    elif kind == "perlin-removal":
        kind = ("perlin", "removal")[int(rng.integers(2))]
    if kind == "perlin":
        return add_anomaly(image, rng, sources, 1.0, beta_max)
    if kind == "cutpaste":
        return cut_paste(image, donor, rng)
    return remove_texture(image, rng)


# --- the selection proxy's anomalies: a family no model trains on -------------------------------
# Model selection from good images alone (ssimae.inference.selection) pastes these into held-back
# defect-free images and ranks candidates by how well they find them. The family must differ
# from every training generator above (a candidate trained on its own test would win by
# construction): stains (an elliptical region brighter or darker by a constant, its texture
# kept) and scratches (thin straight strokes of a constant value).


def stain(image: np.ndarray, rng: np.random.Generator, min_side: float = 0.05,
          max_side: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(image with an elliptical stain, mask): the pixels of a random ellipse (axes a share in
    [min_side, max_side] of the image's sides) shifted by delta, |delta| ~ U[0.1, 0.3], sign
    random, clipped to [0, 1]."""
    h, w = image.shape
    ry, rx = (max(1.0, s * rng.uniform(min_side, max_side)) for s in (h, w))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
    if not mask.any():
        mask[min(int(cy), h - 1), min(int(cx), w - 1)] = True
    delta = rng.uniform(0.1, 0.3) * (1 if rng.random() < 0.5 else -1)
    out = image.copy()
    out[mask] = np.clip(image[mask] + delta, 0, 1).astype(image.dtype)
    return out, mask


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image with a scratch, mask): a straight stroke 1-3 px wide, of length a share in
    [0.2, 0.6] of the image's diagonal, at a random angle, set to a value far from the
    image's mean (its brightest or darkest end: 0.95 or 0.05)."""
    h, w = image.shape
    length = np.hypot(h, w) * rng.uniform(0.2, 0.6)
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    half = rng.uniform(0.5, 1.5)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dy, dx = np.sin(angle), np.cos(angle)
    along = (yy - cy) * dy + (xx - cx) * dx
    across = -(yy - cy) * dx + (xx - cx) * dy
    mask = (np.abs(along) <= length / 2) & (np.abs(across) <= half)
    if not mask.any():
        mask[min(int(cy), h - 1), min(int(cx), w - 1)] = True
    value = 0.05 if float(image.mean()) > 0.5 else 0.95
    out = image.copy()
    out[mask] = value
    return out, mask


def proxy_anomaly(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous image, mask) for the selection proxy: a :func:`stain` or a :func:`scratch`,
    equally likely. Gray (H, W) or colour (H, W, C): a colour image gets the same region in
    every channel. Pixels outside the mask are bit-identical."""
    if image.ndim == 2:
        return (stain if rng.random() < 0.5 else scratch)(image, rng)
    seed = int(rng.integers(2**63))
    which = stain if rng.random() < 0.5 else scratch
    pairs = [which(image[..., c], np.random.default_rng(seed)) for c in range(image.shape[2])]
    return np.stack([p[0] for p in pairs], -1), pairs[0][1]
