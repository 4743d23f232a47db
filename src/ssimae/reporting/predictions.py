"""The files ``predict`` writes: per image a heat map, a defect mask, an overlay (and the raw
map), its thumbnails and report row; at the end predictions.csv, predictions.jsonl and
report.html (:class:`PredictionWriter`).

Outputs mirror each image's path relative to the folder it was found in, so
``test/crack/000.png`` and ``test/good/000.png`` (given the folder ``test``) become
``OUT/crack/000_*.png`` and ``OUT/good/000_*.png``, where that name is safe
(:func:`ssimae.data.inputs.output_names`; the file as given is in the ``source`` column).

A folder holds one result: :func:`remove_previous_result` clears an earlier ``predict``'s
outputs from it (and only those) before a new one is written.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np

from ssimae.core.verdict import GOOD, Prediction
from ssimae.data.datasets import folder_label
from ssimae.errors import printable
from ssimae.io.files import atomic_write_bytes
from ssimae.errors import SsimaeError
from ssimae.reporting.html import REPORT_NAME, THUMB_DIR, full_size_link, save_thumbnails, write_report
from ssimae.reporting.plots import heatmap_rgb, heatmap_vmax, overlay_rgb, save_heatmap, save_mask, save_overlay
from ssimae.reporting.tables import CSV_NAME, JSONL_NAME, outcome, summary, write_verdicts

PICTURES = ("_heatmap.png", "_mask.png", "_overlay.png")  # per image: <rel> + each of these
RAW = ".npy"  # per image with save_raw: <rel>.npy
RESULT_FILES = (CSV_NAME, JSONL_NAME, REPORT_NAME)  # per folder


OWN_FOLDERS = (THUMB_DIR,)  # subfolders of the output folder that are predict's own: no input's output name


def threshold_source(settings, threshold: float | None, fused_on: int | None = None) -> str:
    """Where the threshold in use comes from, in words (printed by ``predict``): given, or
    the run's stored one (``settings``: its InferenceSettings) with its rule and history;
    ``fused_on``: the number of images ``ssimae fuse`` set a fused run's thresholds on."""
    if threshold is not None:
        return "given with --threshold"
    if fused_on is not None:
        return f"stored: {settings.threshold_rule} rule, set by ssimae fuse on {fused_on} defect-free images"
    last = settings.threshold_history[-1] if settings.threshold_history else None
    where = (f", recalibrated {last['recalibrated_on']} on {last['n_images']} images of {last['good']}" if last
             else ", chosen at training on its validation images")
    return f"stored: {settings.threshold_rule} rule{where}"


def remove_previous_result(out: Path, extra: Sequence[str] = ()) -> list[Path]:
    """Remove an earlier ``predict`` result from the folder ``out`` (whose lock the caller
    holds), so the folder holds one result: predictions.csv, predictions.jsonl, report.html,
    thumbs/, the folders named in ``extra`` (e.g. the Ray journal), and per image the
    pictures and raw map of every row of the old predictions.jsonl (or .csv) and of every
    ``<name>_heatmap.png`` that has its ``_mask.png`` and ``_overlay.png`` beside it (a
    result whose tables were never written). Nothing else is touched: other files, and
    anything outside ``out`` (a row naming ``../x`` is ignored). Folders emptied by this are
    removed. Returns what was removed."""
    root = Path(os.path.realpath(out))
    bases = {root / b for b in _listed_bases(root)} | {Path(str(h)[:-len(PICTURES[0])]) for h in root.rglob(
        "*" + PICTURES[0]) if all(Path(str(h)[:-len(PICTURES[0])] + s).is_file() for s in PICTURES[1:])}
    files = [Path(f"{b}{s}") for b in bases for s in (*PICTURES, RAW)] + [root / n for n in RESULT_FILES]
    removed = [f for f in files if _inside(f, root) and f.is_file() and not f.is_symlink() and _unlink(f)]
    for name in (THUMB_DIR, *extra):
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
            removed.append(folder)
    for parent in sorted({f.parent for f in removed}, key=lambda p: len(p.parts), reverse=True):
        while parent != root and _inside(parent, root) and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return removed


def _listed_bases(root: Path) -> set[str]:
    """The output bases (``path`` without suffix) of the rows of the predictions.jsonl (else
    predictions.csv) in ``root``; unreadable tables give none."""
    try:
        if (root / JSONL_NAME).is_file():
            rows = [json.loads(line) for line in (root / JSONL_NAME).read_text().splitlines() if line.strip()]
        else:
            with open(root / CSV_NAME, newline="") as f:
                rows = list(csv.DictReader(f))
        return {str(PurePath(r["path"]).with_suffix("")) for r in rows if isinstance(r.get("path"), str) and r["path"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (its folder resolved) lies strictly under ``root``."""
    return Path(os.path.realpath(path.parent)).joinpath(path.name).is_relative_to(root) and path != root


def _unlink(path: Path) -> bool:
    path.unlink()
    return True


def threshold_story(pixel: float, image: float | None) -> str:
    """Which threshold decides the verdict and which draws the masks, in words (every
    summary of verdicts says it: predict, the reports, the server's page)."""
    if image is None:
        return (f"the verdict: a defect mask at the pixel threshold {pixel:.6g} (score_norm above 1; "
                f"this run has no image threshold)")
    return (f"the verdict: image score above the image threshold {image:.6g} (score_norm above 1); "
            f"masks and regions at the pixel threshold {pixel:.6g}")


class PredictionRows:
    """``predict``'s verdicts without any file (``ssimae predict`` without ``--out``): :meth:`add`
    for each scored image, :meth:`skip` for each unreadable one; :meth:`final_records` are
    the rows of predictions.jsonl, :meth:`summary` its summary line."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.records: list[dict] = []
        self.rows: list[dict] = []
        self.written: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []

    def add(self, source: Path, rel: PurePath, image: np.ndarray, p: Prediction) -> None:
        """The verdict of one image read from ``source``, named after ``rel`` (its path
        relative to its input folder, without suffix)."""
        self._add_record(source, rel, p)

    def _add_record(self, source: Path, rel: PurePath, p: Prediction) -> None:
        """The verdict row of one image; its label is the first folder under the input folder
        ("good" or a defect type)."""
        label = folder_label(rel)
        self.records.append({**p.to_dict(rel.as_posix() + printable(Path(source).suffix), printable(os.fsdecode(source))),
                             "label": label, "outcome": outcome(label, p.defective)})

    def skip(self, source: Path, problem: str) -> None:
        """An unreadable input (listed in the report)."""
        self.skipped.append((Path(source), problem))

    def final_records(self) -> list[dict]:
        """The rows of predictions.jsonl, in the order the images were added."""
        self._settle_labels()
        return self.records

    def _settle_labels(self) -> None:
        """Labels (and outcomes) are known only for an MVTec-style test folder, one with a
        ``good`` subfolder; otherwise subfolders are just folders and both are dropped."""
        if not any(r.get("label") == GOOD for r in self.records):
            for r in (*self.records, *self.rows):
                r["label"] = r["outcome"] = None

    def summary(self) -> str:
        """'3 of 12 images defective (and the false rejects and escapes where known); the
        verdict: image score above the image threshold 0.82 (score_norm above 1); masks and
        regions at the pixel threshold 0.5'."""
        self._settle_labels()
        image_t = self.records[0].get("image_threshold") if self.records else None
        return f"{summary(self.records)}; {threshold_story(self.threshold, image_t)}"

    def said(self, inputs, detector, threshold: float | None) -> str:
        """The summary line ``predict`` logs, with where the threshold comes from (``threshold``:
        the one given, None for the stored one); SsimaeError when every input was skipped."""
        if not self.records:
            raise SsimaeError("no readable images among the inputs (all were skipped)", inputs[0])
        return f"{self.summary()} ({threshold_source(detector.settings, threshold, getattr(detector, 'fused_on', None))})"


class PredictionWriter(PredictionRows):
    """Writes ``predict``'s outputs into the folder ``out`` (which exists): :meth:`add` for
    each scored image (its PNGs now), :meth:`skip` for each unreadable one, :meth:`finish`
    for the tables and the report. The heat map's colour scale runs from 0 to twice the
    threshold (:func:`ssimae.reporting.plots.heatmap_vmax`)."""

    def __init__(self, out: Path, threshold: float, save_raw: bool = False):
        super().__init__(threshold)
        self.out, self.save_raw = Path(out), save_raw

    def add(self, source: Path, rel: PurePath, image: np.ndarray, p: Prediction) -> None:
        """The outputs of one image read from ``source``, named after ``rel`` (its path
        relative to its input folder, without suffix)."""
        t = self.threshold
        base = self.out / rel
        base.parent.mkdir(parents=True, exist_ok=True)
        heatmap, mask, overlay = (f"{base}{suffix}" for suffix in PICTURES)
        save_heatmap(p.residual, heatmap, vmax=heatmap_vmax(t), threshold=t)
        save_mask(p.mask, mask)
        save_overlay(image, p.mask, overlay)
        if self.save_raw:
            buf = io.BytesIO()
            np.save(buf, p.residual.astype(np.float32))
            atomic_write_bytes(f"{base}{RAW}", buf.getvalue())
        self.written.append(base)
        self._add_record(source, rel, p)
        label = self.records[-1]["label"]
        thumbs = save_thumbnails(self.out, rel, {"input": image, "reconstruction": p.reconstruction,
                                                 "heat map": heatmap_rgb(p.residual, 0.0, heatmap_vmax(t)),
                                                 "overlay": overlay_rgb(image, p.mask)})
        full = {"input": full_size_link(source, self.out), "heat map": Path(heatmap).relative_to(self.out).as_posix(),
                "overlay": Path(overlay).relative_to(self.out).as_posix()}
        self.rows.append({**self.records[-1], "type": label, "thumbs": thumbs, "full": full})  # shown as defect types

    def add_row(self, row: dict) -> None:
        """The report row of an image whose outputs were written earlier, by :meth:`add` of
        another writer on the same folder (another process: ``rows[-1]`` after its add)."""
        self.rows.append(row)
        self.records.append({k: v for k, v in row.items() if k not in ("type", "thumbs", "full")})

    def finish(self, title: str, said: str, about: Sequence[str]) -> None:
        """predictions.csv, predictions.jsonl and report.html (``said``: the summary line,
        ``about``: further lines for the report's summary)."""
        self._settle_labels()
        write_verdicts(self.records, self.out)
        write_report(self.out, title=title, images=self.rows, summary=[
            said, *about, f"verdicts: {CSV_NAME}, {JSONL_NAME}"]
            + [f"skipped (unreadable): {printable(os.fsdecode(f))}: {printable(problem)}" for f, problem in self.skipped],
            heat_scale=(heatmap_vmax(self.threshold), self.threshold))

    def finish_predict(self, run, inputs, detector, residual: str, threshold: float | None, log=print) -> None:
        """:meth:`finish` as ``ssimae predict`` sums it up (``threshold``: the one given, None
        for the stored one), then the summary logged and the skipped inputs on stderr;
        SsimaeError when every input was skipped."""
        said = self.said(inputs, detector, threshold)
        self.finish(f"ssimae predict: {Path(run).name}", said, [
            f"run: {run}; model: {detector.title}, {residual} residual; inputs: "
            + ", ".join(os.fspath(i) for i in inputs)])
        log(said)
        if self.skipped:
            print(f"ssimae: skipped {len(self.skipped)} unreadable image(s): "
                  + ", ".join(printable(os.fsdecode(f)) for f, _ in self.skipped), file=sys.stderr)
        log(f"wrote predictions for {len(self.records)} images to {printable(str(self.out))} ({CSV_NAME}, "
            f"{JSONL_NAME}, {REPORT_NAME})")
