"""The files ``predict`` writes: per image a heat map, a defect mask, an overlay (and the raw
map), its thumbnails and report row; at the end predictions.csv, predictions.jsonl and
report.html (:class:`PredictionWriter`).

Outputs mirror each image's path relative to the folder it was found in, so
``test/crack/000.png`` and ``test/good/000.png`` (given the folder ``test``) become
``OUT/crack/000_*.png`` and ``OUT/good/000_*.png``, where that name is safe
(:func:`ssimae.data.inputs.output_names`; the file as given is in the ``source`` column).
"""
from __future__ import annotations

import io
import os
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np

from ssimae.core.verdict import Prediction
from ssimae.errors import printable
from ssimae.io.files import atomic_write_bytes
from ssimae.reporting.html import save_thumbnails, write_report
from ssimae.reporting.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, save_heatmap, save_mask, save_overlay
from ssimae.reporting.tables import CSV_NAME, JSONL_NAME, summary, write_verdicts


def threshold_source(settings, threshold: float | None) -> str:
    """Where the threshold in use comes from, in words (printed by ``predict``): given, or
    the run's stored one (``settings``: its InferenceSettings) with its rule and history."""
    if threshold is not None:
        return "given with --threshold"
    last = settings.threshold_history[-1] if settings.threshold_history else None
    where = (f", recalibrated {last['recalibrated_on']} on {last['n_images']} images of {last['good']}" if last
             else ", chosen at training on its validation images")
    return f"stored: {settings.threshold_rule} rule{where}"


class PredictionWriter:
    """Writes ``predict``'s outputs into the folder ``out`` (which exists): :meth:`add` for
    each scored image (its PNGs now), :meth:`skip` for each unreadable one, :meth:`finish`
    for the tables and the report. The heat map's colour scale runs from 0 to twice the
    threshold (:func:`ssimae.reporting.plots.heatmap_vmax`)."""

    def __init__(self, out: Path, threshold: float, save_raw: bool = False):
        self.out, self.threshold, self.save_raw = Path(out), threshold, save_raw
        self.records: list[dict] = []
        self.rows: list[dict] = []
        self.written: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []

    def add(self, source: Path, rel: PurePath, image: np.ndarray, p: Prediction) -> None:
        """The outputs of one image read from ``source``, named after ``rel`` (its path
        relative to its input folder, without suffix)."""
        t = self.threshold
        base = self.out / rel
        base.parent.mkdir(parents=True, exist_ok=True)
        save_heatmap(p.residual, f"{base}_heatmap.png", vmax=heatmap_vmax(t))
        save_mask(p.mask, f"{base}_mask.png")
        save_overlay(image, p.mask, f"{base}_overlay.png")
        if self.save_raw:
            buf = io.BytesIO()
            np.save(buf, p.residual.astype(np.float32))
            atomic_write_bytes(f"{base}.npy", buf.getvalue())
        self.written.append(base)
        self.records.append(p.record(rel.as_posix() + printable(Path(source).suffix),
                                     printable(os.fsdecode(source))))
        thumbs = save_thumbnails(self.out, rel, {"input": image, "reconstruction": p.reconstruction,
                                                 "heat map": heatmap_rgb(p.residual, 0.0, heatmap_vmax(t)),
                                                 "overlay": overlay_rgb(image, p.mask)})
        folder = rel.parent.as_posix()  # subfolders of an input folder are shown as defect types
        self.rows.append({**self.records[-1], "type": folder if folder != "." else None, "thumbs": thumbs})

    def skip(self, source: Path, problem: str) -> None:
        """An unreadable input (listed in the report)."""
        self.skipped.append((Path(source), problem))

    def finish(self, title: str, said: str, about: Sequence[str]) -> None:
        """predictions.csv, predictions.jsonl and report.html (``said``: the summary line,
        ``about``: further lines for the report's summary)."""
        write_verdicts(self.records, self.out)
        write_report(self.out, title=title, images=self.rows, summary=[
            said, *about, f"verdicts: {CSV_NAME}, {JSONL_NAME}"]
            + [f"skipped (unreadable): {printable(os.fsdecode(f))}: {printable(problem)}" for f, problem in self.skipped])

    def summary(self) -> str:
        """'3 of 12 images defective at threshold 0.5'."""
        return f"{summary(self.records)} at threshold {self.threshold:.6g}"
