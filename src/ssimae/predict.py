"""Prediction: a heat map, a binary defect mask and an overlay for every input image.

Outputs mirror each image's path relative to the folder it was found in, so
``test/crack/000.png`` and ``test/good/000.png`` (given the folder ``test``) become
``OUT/crack/000_*.png`` and ``OUT/good/000_*.png``.
"""
from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path, PurePath

import numpy as np
from tqdm.auto import tqdm

from ssimae.errors import SsimaeError
from ssimae.files import atomic_write_bytes
from ssimae.images import is_image_file, read_image
from ssimae.morphology import segment
from ssimae.plots import save_heatmap, save_mask, save_overlay


def collect_inputs(inputs: list[str | os.PathLike]) -> list[tuple[Path, PurePath]]:
    """Images to predict, each with its output-relative path (without suffix)."""
    found: list[tuple[Path, PurePath]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise SsimaeError("no images in this folder", p)
            found += [(f, f.relative_to(p).with_suffix("")) for f in files]
        elif p.is_file():
            found.append((p, PurePath(p.stem)))
        else:
            raise SsimaeError("no such file or folder", p)
    seen: dict[PurePath, Path] = {}
    for f, rel in found:
        if rel in seen:
            raise SsimaeError(f"two inputs map to the same output name {rel} (also {seen[rel]})", f)
        seen[rel] = f
    return found


ENGINES = ("torch", "onnx")


def load_detector(run: str | os.PathLike, engine: str = "torch", device: str | None = None):
    """A :class:`ssimae.detector.Detector` (engine "torch") or an
    :class:`ssimae.runtime.OnnxDetector` (engine "onnx"; imports no torch)."""
    if engine == "onnx":
        from ssimae.runtime import OnnxDetector

        return OnnxDetector.load(run)
    if engine != "torch":
        raise SsimaeError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    from ssimae.detector import Detector

    return Detector.load(run, device)


def predict(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
            threshold: float | None = None, save_raw: bool = False, device: str | None = None,
            residual: str | None = None, smooth: float | None = None, progress: bool = True, log=print,
            engine: str = "torch") -> list[Path]:
    """Write DIR/<rel>_heatmap.png, <rel>_mask.png, <rel>_overlay.png and, with ``save_raw``,
    DIR/<rel>.npy (the float32 residual map at the image's resolution) for every image.

    The heat map's colour scale runs from 0 to twice the threshold (so the threshold sits
    mid-scale and maps of different images compare), or to the map's maximum when the
    threshold is not positive.

    ``engine``: "torch" (``run`` is a run folder or checkpoint) or "onnx" (``run`` is an
    export of :mod:`ssimae.export`, run by :mod:`ssimae.runtime` without torch)."""
    detector = load_detector(run, engine, device)
    if smooth is not None:
        detector.settings = replace(detector.settings, smooth=smooth)
    if residual is not None and residual != detector.default_residual and threshold is None:
        raise SsimaeError(f"the stored threshold belongs to the {detector.default_residual} residual; "
                          f"give --threshold for the {residual} residual", run)
    t = detector.threshold if threshold is None else threshold
    if t is None:
        raise SsimaeError("the checkpoint stores no threshold (no validation images); pass --threshold", run)
    files = collect_inputs(inputs)
    out = Path(out)
    written = []
    for f, rel in tqdm(files, desc="predicting", disable=not progress):
        img = read_image(f)
        res = detector.residual_map(img, residual)
        mask = segment(res, t, detector.opening_diameter)
        base = out / rel
        base.parent.mkdir(parents=True, exist_ok=True)
        vmax = 2 * t if t > 0 else None
        save_heatmap(res, f"{base}_heatmap.png", vmax=vmax)
        save_mask(mask, f"{base}_mask.png")
        save_overlay(img, mask, f"{base}_overlay.png")
        if save_raw:
            buf = io.BytesIO()
            np.save(buf, res.astype(np.float32))
            atomic_write_bytes(f"{base}.npy", buf.getvalue())
        written.append(base)
    log(f"wrote predictions for {len(files)} images to {out} (threshold {t:.6g})")
    return written
