"""Prediction: a verdict, a heat map, a binary defect mask and an overlay for every input image.

OUT/predictions.csv and OUT/predictions.jsonl hold one verdict per image (path relative to
its input folder, score, defective, defect area, regions, threshold; see
:mod:`ssimae.verdicts`); OUT/report.html shows them with thumbnails (:mod:`ssimae.report`).

Outputs mirror each image's path relative to the folder it was found in, so
``test/crack/000.png`` and ``test/good/000.png`` (given the folder ``test``) become
``OUT/crack/000_*.png`` and ``OUT/good/000_*.png``.
"""
from __future__ import annotations

import io
import math
import os
import sys
from dataclasses import replace
from pathlib import Path, PurePath

import numpy as np
from tqdm.auto import tqdm

from ssimae.datasets import walk_images
from ssimae.errors import SsimaeError
from ssimae.files import atomic_write_bytes
from ssimae.images import read_image
from ssimae.scoring import IMAGES_PER_BATCH
from ssimae.outputs import prepare_out_dir
from ssimae.residual import check_residual
from ssimae.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, save_heatmap, save_mask, save_overlay
from ssimae.report import REPORT_NAME, save_thumbnails, write_report
from ssimae.verdicts import CSV_NAME, JSONL_NAME, summary, write_verdicts


def collect_inputs(inputs: list[str | os.PathLike], exclude: str | os.PathLike | None = None
                   ) -> list[tuple[Path, PurePath]]:
    """Images to predict, each with its output-relative path (without suffix).

    Files under ``exclude`` (the output folder, when it lies inside an input folder) are not
    inputs: a second run does not predict the first one's heat maps."""
    found: list[tuple[Path, PurePath]] = []
    skip = None if exclude is None else os.path.realpath(exclude)
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if skip is not None and os.path.realpath(p) == skip:
                raise SsimaeError("the output folder is this input folder; choose another --out", p)
            files = [f for f in walk_images(p) if skip is None or not os.path.realpath(f).startswith(skip + os.sep)]
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


def threshold_source(detector, threshold: float | None) -> str:
    """Where the threshold in use comes from, in words (printed by ``predict``)."""
    if threshold is not None:
        return "given with --threshold"
    s = detector.settings
    last = s.threshold_history[-1] if s.threshold_history else None
    where = (f", recalibrated {last['recalibrated_on']} on {last['n_images']} images of {last['good']}" if last
             else ", chosen at training on its validation images")
    return f"stored: {s.threshold_rule} rule{where}"


def predict(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike, *,
            threshold: float | None = None, save_raw: bool = False, device: str | None = None,
            residual: str | None = None, smooth: float | None = None, progress: bool = True, log=print,
            engine: str = "torch", skip_bad: bool = False) -> list[Path]:
    """Write DIR/<rel>_heatmap.png, <rel>_mask.png, <rel>_overlay.png and, with ``save_raw``,
    DIR/<rel>.npy (the float32 residual map at the image's resolution) for every image, and
    the verdicts of all images in DIR/predictions.csv and DIR/predictions.jsonl.

    The heat map's colour scale runs from 0 to twice the threshold (so the threshold sits
    mid-scale and maps of different images compare), or to the map's maximum when the
    threshold is not positive. ``skip_bad``: an unreadable image is reported (on stderr, and
    in the report) and skipped instead of stopping the run.

    ``engine``: "torch" (``run`` is a run folder or checkpoint) or "onnx" (``run`` is an
    export of :mod:`ssimae.export`, run by :mod:`ssimae.runtime` without torch)."""
    if threshold is not None and not math.isfinite(threshold):
        raise SsimaeError(f"--threshold must be a finite number, got {threshold}")
    detector = load_detector(run, engine, device)
    if smooth is not None:
        detector.settings = replace(detector.settings, smooth=smooth)
    if residual is not None and residual != detector.default_residual and threshold is None:
        raise SsimaeError(f"the stored threshold belongs to the {detector.default_residual} residual; "
                          f"give --threshold for the {residual} residual", run)
    if residual is not None:
        check_residual(residual, detector.outputs)
    t = detector.threshold if threshold is None else threshold
    if t is None:
        raise SsimaeError("the checkpoint stores no threshold (no validation images); pass --threshold", run)
    files = collect_inputs(inputs, exclude=out)
    out = prepare_out_dir(out)
    written, records, rows, skipped = [], [], [], []
    name = residual or detector.default_residual
    bar = tqdm(total=len(files), desc="predicting", disable=not progress)
    for i in range(0, len(files), IMAGES_PER_BATCH):
        chunk = files[i:i + IMAGES_PER_BATCH]
        images = [_read(f, skip_bad, skipped, detector.settings.preprocess.read) for f, _ in chunk]
        chunk, images = [c for c, im in zip(chunk, images) if im is not None], [im for im in images if im is not None]
        bar.update(len(files[i:i + IMAGES_PER_BATCH]) - len(chunk))
        if not images:
            continue
        for (f, rel), img, (recon, maps) in zip(chunk, images, detector.analyze_batch(images, (name,))):
            p = detector.verdict(maps[name], t, recon)
            written.append(_write_images(out / rel, img, p, t, save_raw))
            records.append(p.record(rel.as_posix() + f.suffix))
            thumbs = save_thumbnails(out, rel, {"input": img, "reconstruction": p.reconstruction,
                                                "heat map": heatmap_rgb(p.residual, 0.0, heatmap_vmax(t)),
                                                "overlay": overlay_rgb(img, p.mask)})
            folder = rel.parent.as_posix()  # subfolders of an input folder are shown as defect types
            rows.append({**records[-1], "type": folder if folder != "." else None, "thumbs": thumbs})
            bar.update()
    bar.close()
    if not records:
        raise SsimaeError("no readable images among the inputs (all were skipped)", inputs[0])
    out.mkdir(parents=True, exist_ok=True)
    write_verdicts(records, out)
    said = f"{summary(records)} at threshold {t:.6g} ({threshold_source(detector, threshold)})"
    write_report(out, title=f"ssimae predict: {Path(run).name}", images=rows, summary=[
        said, f"run: {run}; model: {detector.title}, {name} residual; inputs: "
        + ", ".join(os.fspath(i) for i in inputs), f"verdicts: {CSV_NAME}, {JSONL_NAME}"]
        + [f"skipped (unreadable): {f}: {problem}" for f, problem in skipped])
    log(said)
    if skipped:
        print(f"ssimae: skipped {len(skipped)} unreadable image(s): " + ", ".join(str(f) for f, _ in skipped),
              file=sys.stderr)
    log(f"wrote predictions for {len(files)} images to {out} ({CSV_NAME}, {JSONL_NAME}, {REPORT_NAME})")
    return written


def _read(path: Path, skip_bad: bool, skipped: list, read=read_image) -> np.ndarray | None:
    """The image at ``path`` as ``read`` reads it (the run's :meth:`Preprocess.read`); with
    ``skip_bad``, None for an unreadable one (reported on stderr and added to ``skipped`` as
    (path, problem))."""
    try:
        return read(path)
    except SsimaeError as err:
        if not skip_bad:
            raise
        skipped.append((path, err.problem))
        print(f"ssimae: skipping {err}", file=sys.stderr)
        return None


def _write_images(base: Path, img: np.ndarray, p, t: float, save_raw: bool) -> Path:
    """The heat map, mask, overlay (and raw map) of one image, next to ``base``."""
    base.parent.mkdir(parents=True, exist_ok=True)
    save_heatmap(p.residual, f"{base}_heatmap.png", vmax=heatmap_vmax(t))
    save_mask(p.mask, f"{base}_mask.png")
    save_overlay(img, p.mask, f"{base}_overlay.png")
    if save_raw:
        buf = io.BytesIO()
        np.save(buf, p.residual.astype(np.float32))
        atomic_write_bytes(f"{base}.npy", buf.getvalue())
    return base
