"""report.html: one self-contained page per result folder (``evaluate``, ``predict``,
``compare``, ``demo``).

The page is rendered by jinja2 from ``templates/report.html.j2``; it needs no server and no
internet: styles and the small script are inline, and every image is a PNG beside it,
linked by a relative path (thumbnails under ``thumbs/``, at most :data:`THUMB_SIZE` px on
their longer side). It holds a summary, a metrics table, figures (ROC and PRO curves) and
one table row per image (path, defect type, score, verdict, defect area and thumbnails:
input, reconstruction, heat map, overlay, ground truth where known). The script sorts the
rows by score, filters them by verdict and defect type, and shows :data:`PAGE_SIZE` rows
at a time (rows off the page are hidden, and their lazily loaded images are never
fetched), so the page stays fast with thousands of images. Without the script every row
is shown.
"""
from __future__ import annotations

import math
import os
from urllib.parse import quote
from pathlib import Path, PurePath
from typing import Mapping, Sequence

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from skimage.transform import resize

from ssimae.errors import printable
from ssimae.io.files import atomic_write_text
from ssimae.reporting.plots import _gray_uint8, _save_array, colorbar_rgb

REPORT_NAME = "report.html"
THUMB_DIR = "thumbs"
THUMB_SIZE = 128  # px, longer side of a thumbnail
PAGE_SIZE = 50  # image rows per page
THUMB_NAMES = ("input", "reconstruction", "heat map", "overlay", "ground truth")
COLORBAR_NAME = "colorbar.png"  # under thumbs/: the heat maps' colour scale, shown in the table's header


def _fmt(v) -> str:
    """Numbers with 4 significant digits, NaN/None as n/a; anything else as text."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _environment() -> Environment:
    # every value printed as text made printable (control characters, bytes of file names that
    # are not UTF-8: \\xNN), then HTML-escaped
    env = Environment(loader=PackageLoader("ssimae.reporting", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      finalize=lambda v: printable(v) if isinstance(v, str) else v)
    env.filters["fmt"] = _fmt
    env.filters["url"] = lambda path: quote(printable(str(path)), safe="/")  # every link percent-encoded
    return env


def _thumbnail(array: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) array shrunk so its longer side is at most ``size``."""
    h, w = array.shape[:2]
    scale = min(1.0, size / max(h, w))
    if scale == 1.0:
        return array
    shape = (max(1, round(h * scale)), max(1, round(w * scale))) + array.shape[2:]
    small = resize(array.astype(np.float64), shape, order=1, anti_aliasing=True, preserve_range=True)
    return np.round(small).clip(0, 255).astype(np.uint8)


def save_thumbnails(out: str | os.PathLike, rel: PurePath, pictures: Mapping[str, np.ndarray | None]) -> dict:
    """Write the thumbnails of one image under ``out``/thumbs/<rel>_<name>.png.

    pictures: name (one of THUMB_NAMES) -> gray float (H, W) in [0, 1], bool mask, or uint8
    (H, W, 3) RGB; None entries are skipped. Returns {name: path relative to ``out``}."""
    links = {}
    for name, pic in pictures.items():
        if pic is None:
            continue
        a = np.asarray(pic)
        if a.dtype == bool:
            a = np.where(a, 255, 0).astype(np.uint8)
        elif a.dtype != np.uint8:
            a = _gray_uint8(a)
        rel_png = PurePath(THUMB_DIR) / f"{rel.as_posix()}_{name.replace(' ', '-')}.png"
        _save_array(_thumbnail(a), Path(out) / rel_png)
        links[name] = rel_png.as_posix()
    return links


def full_size_link(path: str | os.PathLike, out: str | os.PathLike) -> str | None:
    """The relative link from the report in ``out`` to a full-size file (an input image, a
    ground-truth mask), or None when it cannot be one (a name that is not printable as it is)."""
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(out))
    return rel.replace(os.sep, "/") if printable(rel) == rel and os.path.isfile(path) else None


def write_report(out: str | os.PathLike, *, title: str, summary: Sequence[str] = (),
                 metrics: Sequence[Mapping] = (), metric_columns: Sequence[str] = (),
                 figures: Sequence[tuple[str, str]] = (), links: Sequence[tuple[str, str]] = (),
                 images: Sequence[Mapping] = (), page_size: int = PAGE_SIZE,
                 heat_scale: tuple[float, float] | None = None) -> Path:
    """Render ``out``/report.html (atomically) and return its path.

    metrics: rows of the metrics table (dicts; ``metric_columns`` picks and orders the keys);
    figures and links: (caption, path relative to ``out``); images: one dict per image
    with ``path``, ``score``, ``score_norm`` (score / verdict threshold), ``defective``,
    ``defect_area``, ``outcome`` (an escape is shown in a warning colour), ``type`` (None when
    unknown), ``thumbs`` ({name: path relative to ``out``}, from :func:`save_thumbnails`) and
    ``full`` ({name: link to the full-size file}, each thumbnail opening it). ``heat_scale``:
    (top of the heat maps' colour scale, threshold), drawn as a colour bar in the table's header."""
    from ssimae._version import __version__

    images = list(images)
    types = sorted({im["type"] for im in images if im.get("type")})
    shown = [n for n in THUMB_NAMES if any(n in im["thumbs"] for im in images)]
    colorbar = None
    if heat_scale is not None and heat_scale[0] is not None and "heat map" in shown:
        colorbar = f"{THUMB_DIR}/{COLORBAR_NAME}"
        _save_array(colorbar_rgb(THUMB_SIZE, 0.0, heat_scale[0], {"threshold": heat_scale[1]}), Path(out) / colorbar)
    html = _environment().get_template("report.html.j2").render(
        title=title, summary=list(summary), metrics=[dict(m) for m in metrics], metric_columns=list(metric_columns),
        figures=list(figures), links=list(links), images=images, types=types, thumb_names=shown,
        thumb_size=THUMB_SIZE, page_size=page_size, version=__version__, colorbar=colorbar)
    path = Path(out) / REPORT_NAME
    atomic_write_text(path, html)
    return path
