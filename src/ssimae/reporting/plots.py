"""Figures and tables: ROC curves, residual heat maps, masks, overlays, comparison grids.

Everything renders off-screen: figures are matplotlib ``Figure`` objects drawn by the Agg
canvas directly (pyplot is never imported, so no window opens and the global backend is
left alone). Images are numpy arrays (H, W); gray images are float in [0, 1]; masks are
bool; per-pixel outputs (mask, overlay) are written with PIL at exactly H x W; a heat map
file holds the H x W map pixel for pixel at its top left and its colour bar to the right
(:func:`heatmap_with_colorbar`).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ssimae.errors import SsimaeError

HEATMAP_CMAP = "inferno"
ROC_FPR_MARK = 0.3  # dashed vertical line on ROC plots


def _as_2d(array, name: str) -> np.ndarray:
    """``array`` as a (H, W) numpy array; ValueError otherwise."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W), got shape {a.shape}")
    return a


def _as_image(array, name: str) -> np.ndarray:
    """``array`` as a gray (H, W) or RGB (H, W, 3) numpy array; ValueError otherwise."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    return _as_2d(array, name)


def _prepare(path: str | os.PathLike) -> Path:
    """Path with its parent folder created; SsimaeError if that fails."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SsimaeError(f"cannot create output folder: {exc.strerror or exc}", p.parent) from exc
    return p


def _save_array(rgb_or_gray: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, pixel for pixel."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb_or_gray)).save(buf, format="PNG")
    return _write_png(buf.getvalue(), path)


def _write_png(data: bytes, path: str | os.PathLike) -> Path:
    """Write encoded PNG bytes with the one atomic writer: a kill or a full disk leaves the
    old file whole (or none), never a partial or 0-byte PNG."""
    from ssimae.io.files import atomic_write_bytes

    p = _prepare(path)
    atomic_write_bytes(p, data)
    return p


def _save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` with Agg and write it as PNG."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return _write_png(buf.getvalue(), path)


def plot_roc(curves: Mapping[str, tuple], path: str | os.PathLike, title: str = "Pixel-level ROC",
             ylabel: str = "true positive rate") -> Path:
    """ROC curves (or PRO curves: ``ylabel``), one per model, saved as PNG.

    curves: name -> (fpr, tpr, auc); fpr, tpr 1-D arrays in [0, 1]; auc a float (nan -> "n/a").
    The legend reads "name (AUC 0.912)"; a dashed vertical line marks FPR 0.3 and a dotted
    diagonal the chance level.
    """
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle=":", color="0.6", linewidth=1, label="chance")
    ax.axvline(ROC_FPR_MARK, linestyle="--", color="0.4", linewidth=1, label=f"FPR {ROC_FPR_MARK:g}")
    for name, (fpr, tpr, auc) in curves.items():
        auc_text = "n/a" if auc is None or not np.isfinite(auc) else f"{auc:.3f}"
        ax.plot(np.asarray(fpr), np.asarray(tpr), linewidth=1.8, label=f"{name} (AUC {auc_text})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save_figure(fig, path, dpi=120)


def heatmap_vmax(threshold: float) -> float | None:
    """Top of a heat map's colour scale at ``threshold``: twice the threshold (None, the map's
    maximum, for a threshold that is not positive and finite)."""
    return 2 * threshold if 0 < threshold < np.inf else None


def heatmap_rgb(residual, vmin: float = 0.0, vmax: float | None = None) -> np.ndarray:
    """(H, W) residual -> uint8 (H, W, 3) through the 'inferno' colormap.

    Values are scaled linearly from [vmin, vmax] to [0, 1] and clipped; vmax defaults to the
    largest finite value. A constant map (vmax <= vmin) is drawn in the colormap's lowest
    colour; non-finite values are black.
    """
    r = _as_2d(residual, "residual").astype(np.float64)
    finite = np.isfinite(r)
    if vmax is None:
        vmax = float(r[finite].max()) if finite.any() else vmin
    scale = vmax - vmin
    t = np.clip((r - vmin) / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(r)
    t = np.where(finite, t, 0.0)
    rgb = matplotlib.colormaps[HEATMAP_CMAP](t, bytes=True)[..., :3]
    rgb[~finite] = 0
    return np.ascontiguousarray(rgb, dtype=np.uint8)


BAR_GAP, BAR_WIDTH, BAR_LABELS = 6, 14, 84  # px of the colour bar strip: white gap, the bar, its labels
BAR_MIN_HEIGHT = 96  # px: a heat map lower than this gets a taller (white-padded) canvas for its bar


def colorbar_rgb(height: int, vmin: float, vmax: float, marks: Mapping[str, float] = ()) -> np.ndarray:
    """A vertical colour bar of :data:`HEATMAP_CMAP` as uint8 (height, BAR_GAP + BAR_WIDTH +
    BAR_LABELS, 3) on white: row i shows the value ``vmax - (vmax - vmin) * i / (height - 1)``
    (the top is ``vmax``), labelled with ``vmax`` and ``vmin``; each of ``marks`` ({label:
    value}, e.g. the threshold) is a black line across the bar at its row, labelled."""
    height = max(int(height), 2)
    values = vmax - (vmax - vmin) * np.arange(height) / (height - 1)
    strip = np.full((height, BAR_GAP + BAR_WIDTH + BAR_LABELS, 3), 255, np.uint8)
    strip[:, BAR_GAP:BAR_GAP + BAR_WIDTH] = heatmap_rgb(np.repeat(values[:, None], BAR_WIDTH, 1), vmin, vmax)
    picture = Image.fromarray(strip)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    x = BAR_GAP + BAR_WIDTH + 3
    labels = [(0, f"{vmax:.3g}"), (height - 1, f"{vmin:.3g}")]
    for label, value in dict(marks).items():
        if vmin <= value <= vmax and vmax > vmin:
            row = int(round((vmax - value) / (vmax - vmin) * (height - 1)))
            draw.line([(BAR_GAP, row), (BAR_GAP + BAR_WIDTH - 1, row)], fill=(0, 0, 0))
            labels.append((row, f"{label} {value:.3g}"))
    for row, text in labels:
        top, bottom = draw.textbbox((0, 0), text, font=font)[1::2]
        y = min(max(row - (top + bottom) // 2, -top), height - bottom - 1)
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(picture)


def heatmap_with_colorbar(residual, vmax: float | None = None, threshold: float | None = None) -> np.ndarray:
    """uint8 (max(H, BAR_MIN_HEIGHT), W + strip, 3): ``heatmap_rgb(residual, 0, vmax)`` pixel
    for pixel at the top left, white below it, and its :func:`colorbar_rgb` (0 .. vmax, the
    map's maximum when None; ``threshold`` marked) to the right."""
    rgb = heatmap_rgb(residual, 0.0, vmax)
    h, w = rgb.shape[:2]
    if vmax is None:
        finite = np.asarray(residual, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        vmax = float(finite.max()) if finite.size else 0.0
    bar = colorbar_rgb(max(h, BAR_MIN_HEIGHT), 0.0, vmax, {} if threshold is None else {"threshold": threshold})
    canvas = np.full((bar.shape[0], w + bar.shape[1], 3), 255, np.uint8)
    canvas[:h, :w] = rgb
    canvas[:, w:] = bar
    return canvas


def save_heatmap(residual, path: str | os.PathLike, vmax: float | None = None, threshold: float | None = None) -> Path:
    """Write :func:`heatmap_with_colorbar` (the map pixel for pixel at the top left, its colour
    bar to the right) as an RGB PNG."""
    return _save_array(heatmap_with_colorbar(residual, vmax, threshold), path)


def save_mask(mask, path: str | os.PathLike) -> Path:
    """Write a bool (H, W) mask as a gray PNG of exactly H x W pixels: 255 = True, 0 = False."""
    m = _as_2d(mask, "mask").astype(bool)
    return _save_array(np.where(m, 255, 0).astype(np.uint8), path)


def _gray_uint8(image) -> np.ndarray:
    """(H, W) gray or (H, W, 3) RGB float in [0, 1] -> uint8 of the same shape (clipped, rounded)."""
    img = _as_image(image, "image").astype(np.float64)
    return np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)


def mask_outline(mask) -> np.ndarray:
    """bool (H, W): mask pixels with a 4-neighbour outside the mask (1-px inner outline).

    The image border does not count as outside, so a mask touching it is not framed.
    """
    m = _as_2d(mask, "mask").astype(bool)
    return m & ~ndimage.binary_erosion(m, border_value=1)


def overlay_rgb(image, mask, color: Sequence[int] = (255, 0, 0), alpha: float = 0.5) -> np.ndarray:
    """Gray (H, W) or RGB (H, W, 3) image in [0, 1] with ``mask`` blended in -> uint8 (H, W, 3).

    Inside the mask: (1 - alpha) * pixel + alpha * color; the mask's 1-px inner outline is
    drawn in full ``color``. Pixels outside the mask keep the image's value exactly.
    """
    base = _gray_uint8(image)
    m = _as_2d(mask, "mask").astype(bool)
    if m.shape != base.shape[:2]:
        raise ValueError(f"image {base.shape[:2]} and mask {m.shape} differ in shape")
    rgb = (base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)).astype(np.float64)
    col = np.asarray(color, dtype=np.float64).reshape(3)
    rgb[m] = (1.0 - alpha) * rgb[m] + alpha * col
    rgb[mask_outline(m)] = col
    return np.round(np.clip(rgb, 0, 255)).astype(np.uint8)


def save_overlay(image, mask, path: str | os.PathLike, color: Sequence[int] = (255, 0, 0),
                 alpha: float = 0.5) -> Path:
    """Write overlay_rgb(image, mask) as an RGB PNG of exactly H x W pixels."""
    return _save_array(overlay_rgb(image, mask, color, alpha), path)


def _model_ranges(rows: Sequence[Mapping], model_names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """model -> (vmin, vmax) of its residuals over all rows (vmin <= 0), for a shared scale."""
    ranges = {}
    for model in model_names:
        values = [np.asarray(r["models"][model]["residual"], dtype=np.float64)
                  for r in rows if model in r.get("models", {})]
        finite = [v[np.isfinite(v)] for v in values]
        finite = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(0)
        lo = min(0.0, float(finite.min())) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        ranges[model] = (lo, hi if hi > lo else lo + 1.0)
    return ranges


def comparison_figure(rows: Sequence[Mapping], model_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Grid of test images vs. models, saved as PNG.

    rows: one dict per test image: {"name": str, "image": (H, W) in [0, 1] (or RGB (H, W, 3)),
    "mask": (H, W) bool, "models": {model: {"reconstruction": (H, W) or (H, W, 3), "residual": (H, W)}}}.
    Columns: input | for each model: reconstruction, residual | ground truth. Residuals use the
    'inferno' colormap on one scale per model (shared by all rows, with a colour bar); a model
    missing from a row leaves its two cells blank.
    """
    if not rows:
        raise ValueError("comparison_figure needs at least one row")
    model_names = list(model_names)
    ranges = _model_ranges(rows, model_names)
    titles = ["input"]
    for model in model_names:
        titles += [f"{model}\nreconstruction", f"{model}\nresidual"]
    titles.append("ground truth")
    n_rows, n_cols = len(rows), len(titles)
    fig = Figure(figsize=(2.0 * n_cols, 2.0 * n_rows + 0.6))
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    residual_images = {}
    for i, row in enumerate(rows):
        cells = [(np.asarray(row["image"]), dict(cmap="gray", vmin=0, vmax=1))]
        for model in model_names:
            out = row.get("models", {}).get(model)
            if out is None:
                cells += [None, None]
                continue
            lo, hi = ranges[model]
            cells.append((np.asarray(out["reconstruction"]), dict(cmap="gray", vmin=0, vmax=1)))
            cells.append((np.asarray(out["residual"]), dict(cmap=HEATMAP_CMAP, vmin=lo, vmax=hi), model))
        cells.append((np.asarray(row["mask"], dtype=float), dict(cmap="gray", vmin=0, vmax=1)))
        for j, cell in enumerate(cells):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize="small")
            if j == 0:
                ax.set_ylabel(str(row.get("name", "")), fontsize="small")
            if cell is None:
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            pixels = _as_image(cell[0], titles[j].replace("\n", " "))
            if pixels.ndim == 3:  # RGB: shown as it is (no colormap), clipped to [0, 1]
                pixels = np.clip(pixels, 0.0, 1.0)
            im = ax.imshow(pixels, interpolation="nearest", **cell[1])
            if len(cell) == 3:
                residual_images.setdefault(cell[2], (im, j))
    for model, (im, j) in residual_images.items():
        cax = axes[-1, j].inset_axes([0.05, -0.14, 0.9, 0.06])  # below the column, layout untouched
        fig.colorbar(im, cax=cax, orientation="horizontal")
        cax.tick_params(labelsize="x-small")
    return _save_figure(fig, path, dpi=100)
