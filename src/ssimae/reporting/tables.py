"""Tables written to files: predictions.csv / predictions.jsonl (one verdict per image),
roc.csv (a pixel ROC curve) and markdown tables (``compare``'s results.md).

Every writer is atomic (:mod:`ssimae.io.files`): a kill or a full disk leaves the old file whole.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ssimae.io.files import atomic_write_text

if TYPE_CHECKING:  # the runtime path writes tables without importing the metrics (scikit-learn)
    from ssimae.core.metrics import RocCurve

CSV_NAME, JSONL_NAME = "predictions.csv", "predictions.jsonl"
COLUMNS = ("path", "score", "score_norm", "defective", "defect_area", "n_regions", "regions", "regions_are",
           "threshold", "image_threshold", "label", "outcome", "source")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula
# outcome of an image whose label is known (its input subfolder: "good" or a defect type)
OUTCOMES = {(False, True): "false reject", (True, False): "escape", (False, False): "pass", (True, True): "found"}


def outcome(label: str | None, defective: bool) -> str | None:
    """"false reject" (a good image flagged), "escape" (a defective one passed), "pass", "found";
    None when the label is unknown."""
    return None if label is None else OUTCOMES[(label != "good", bool(defective))]


def csv_text(cell: str) -> str:
    """A text cell safe to open in a spreadsheet: one starting with a formula character
    (:data:`FORMULA_PREFIXES`) gets a leading ``'`` (OWASP, "CSV injection"), which
    spreadsheets show as text; numbers are written by the caller, never through this."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def write_verdicts(records: list[dict], out: str | os.PathLike) -> None:
    """Write ``out``/predictions.csv (regions as a JSON list in one column; defective as
    yes/no; score_norm, image_threshold, label and outcome empty where unknown; text cells through
    :func:`csv_text`) and ``out``/predictions.jsonl (one JSON object per image, as given), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in records:
        w.writerow([csv_text(r["path"]), repr(r["score"]), _number(r.get("score_norm")),
                    "yes" if r["defective"] else "no", r["defect_area"], r["n_regions"],
                    json.dumps(r["regions"], separators=(",", ":")), r.get("regions_are") or "", repr(r["threshold"]),
                    _number(r.get("image_threshold")),
                    csv_text(r.get("label") or ""), r.get("outcome") or "", csv_text(r.get("source", ""))])
    atomic_write_text(os.path.join(out, CSV_NAME), buf.getvalue())
    atomic_write_text(os.path.join(out, JSONL_NAME), "".join(json.dumps(r) + "\n" for r in records))


def _number(value) -> str:
    """A CSV cell of an optional number: repr (exact), or empty."""
    return "" if value is None else repr(value)


def summary(records: list[dict]) -> str:
    """'12 of 340 images defective', and where labels are known '; false rejects: 1 of 10 good
    images, escapes: 0 of 24 defective images'."""
    n = sum(r["defective"] for r in records)
    said = f"{n} of {len(records)} image{'s' if len(records) != 1 else ''} defective"
    good = [r for r in records if r.get("label") == "good"]
    bad = [r for r in records if r.get("label") not in (None, "good")]
    if good or bad:
        said += (f"; false rejects: {sum(r['defective'] for r in good)} of {len(good)} good images, "
                 f"escapes: {sum(not r['defective'] for r in bad)} of {len(bad)} defective images")
    return said


def write_roc_csv(path: str | os.PathLike, curve: RocCurve, max_rows: int = 2000) -> int:
    """Write ``threshold,fpr,tpr`` rows (threshold in the '>' convention, ``-inf`` last).

    Decimation when the curve has more than ``max_rows`` points: with
    ``step = 2 / (max_rows - 2)``, a point is kept when it enters a new cell of the
    ``step`` x ``step`` grid (``floor(fpr / step)`` or ``floor(tpr / step)`` changes),
    plus both endpoints. The curve is monotone, so at most ``max_rows`` rows remain and
    the kept polyline stays within ``step`` (about 1e-3) of the full one. Values are
    written with ``repr`` so thresholds round-trip exactly.

    Returns:
        number of data rows written.
    """
    fpr, tpr, th = curve.fpr, curve.tpr, curve.thresholds
    if max_rows < 3:
        raise ValueError(f"max_rows must be >= 3, got {max_rows}")
    if fpr.size > max_rows and not (np.isnan(fpr).any() or np.isnan(tpr).any()):
        step = 2.0 / (max_rows - 2)
        cx, cy = np.floor(fpr / step), np.floor(tpr / step)
        keep = np.r_[True, (np.diff(cx) != 0) | (np.diff(cy) != 0)]
        keep[-1] = True
        fpr, tpr, th = fpr[keep], tpr[keep], th[keep]
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["threshold", "fpr", "tpr"])
    for row in zip(th.tolist(), fpr.tolist(), tpr.tolist()):
        w.writerow([repr(v) for v in row])
    atomic_write_text(path, fh.getvalue())  # a kill or a full disk leaves the old file whole
    return int(fpr.size)


def _cell(value, floatfmt: str) -> str:
    """One markdown table cell: floats formatted, nan/None/missing as "n/a", '|' escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else format(float(value), floatfmt)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """GitHub markdown table of ``rows`` (dicts) restricted to ``columns``, in that order.

    Floats use ``floatfmt``; nan, None and missing keys are shown as "n/a". The result is
    header, separator and one line per row, each ending in a newline.
    """
    lines = ["| " + " | ".join(_cell(c, floatfmt) for c in columns) + " |",
             "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), floatfmt) for c in columns) + " |")
    return "\n".join(lines) + "\n"
