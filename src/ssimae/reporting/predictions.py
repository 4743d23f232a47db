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
import sys
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np

from ssimae.core.verdict import GOOD, Prediction
from ssimae.data.datasets import folder_label
from ssimae.errors import printable
from ssimae.io.files import atomic_write_bytes
from ssimae.errors import SsimaeError
from ssimae.reporting.html import REPORT_NAME, THUMB_DIR, save_thumbnails, write_report
from ssimae.reporting.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, save_heatmap, save_mask, save_overlay
from ssimae.reporting.tables import CSV_NAME, JSONL_NAME, outcome, summary, write_verdicts


OWN_FOLDERS = (THUMB_DIR,)  # subfolders of the output folder that are predict's own: no input's output name


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
        label = folder_label(rel)  # the first folder under the input folder: "good" or a defect type
        self.records.append({**p.record(rel.as_posix() + printable(Path(source).suffix), printable(os.fsdecode(source))),
                             "label": label, "outcome": outcome(label, p.defective)})
        thumbs = save_thumbnails(self.out, rel, {"input": image, "reconstruction": p.reconstruction,
                                                 "heat map": heatmap_rgb(p.residual, 0.0, heatmap_vmax(t)),
                                                 "overlay": overlay_rgb(image, p.mask)})
        self.rows.append({**self.records[-1], "type": label, "thumbs": thumbs})  # shown as defect types

    def add_row(self, row: dict) -> None:
        """The report row of an image whose outputs were written earlier, by :meth:`add` of
        another writer on the same folder (another process: ``rows[-1]`` after its add)."""
        self.rows.append(row)
        self.records.append({k: v for k, v in row.items() if k not in ("type", "thumbs")})

    def skip(self, source: Path, problem: str) -> None:
        """An unreadable input (listed in the report)."""
        self.skipped.append((Path(source), problem))

    def finish(self, title: str, said: str, about: Sequence[str]) -> None:
        """predictions.csv, predictions.jsonl and report.html (``said``: the summary line,
        ``about``: further lines for the report's summary)."""
        self._settle_labels()
        write_verdicts(self.records, self.out)
        write_report(self.out, title=title, images=self.rows, summary=[
            said, *about, f"verdicts: {CSV_NAME}, {JSONL_NAME}"]
            + [f"skipped (unreadable): {printable(os.fsdecode(f))}: {printable(problem)}" for f, problem in self.skipped])

    def _settle_labels(self) -> None:
        """Labels (and outcomes) are known only for an MVTec-style test folder, one with a
        ``good`` subfolder; otherwise subfolders are just folders and both are dropped."""
        if not any(r.get("label") == GOOD for r in self.records):
            for r in (*self.records, *self.rows):
                r["label"] = r["outcome"] = None

    def finish_predict(self, run, inputs, detector, residual: str, threshold: float | None, log=print) -> None:
        """:meth:`finish` as ``ssimae predict`` sums it up (``threshold``: the one given, None
        for the stored one), then the summary logged and the skipped inputs on stderr;
        SsimaeError when every input was skipped."""
        if not self.records:
            raise SsimaeError("no readable images among the inputs (all were skipped)", inputs[0])
        said = f"{self.summary()} ({threshold_source(detector.settings, threshold)})"
        self.finish(f"ssimae predict: {Path(run).name}", said, [
            f"run: {run}; model: {detector.title}, {residual} residual; inputs: "
            + ", ".join(os.fspath(i) for i in inputs)])
        log(said)
        if self.skipped:
            print(f"ssimae: skipped {len(self.skipped)} unreadable image(s): "
                  + ", ".join(printable(os.fsdecode(f)) for f, _ in self.skipped), file=sys.stderr)
        log(f"wrote predictions for {len(self.records)} images to {printable(str(self.out))} ({CSV_NAME}, "
            f"{JSONL_NAME}, {REPORT_NAME})")

    def summary(self) -> str:
        """'3 of 12 images defective at threshold 0.5' (and the image threshold, the false rejects
        and escapes where known)."""
        self._settle_labels()
        image_t = self.records[0].get("image_threshold") if self.records else None
        at = f"pixel threshold {self.threshold:.6g}, image threshold {image_t:.6g}" if image_t is not None else \
            f"threshold {self.threshold:.6g}"
        return f"{summary(self.records)} at {at}"
