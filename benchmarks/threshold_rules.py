"""Threshold rules measured on trained runs (issue #11): which rule should be the default?

    python benchmarks/threshold_rules.py --run RUN [--run RUN ...] --out DIR [--cache DIR] \\
        [--data ROOT]

For every run: the residual maps (the run's own residual and smoothing) of its defect-free
validation images (the seeded split it was trained with) and of its dataset's test images
are computed once (cached as a pickle in ``--cache``); then every rule of RULES picks a
threshold on the validation maps, and at that threshold the test set gives

- recall: share of defective test images with at least one defect pixel after the opening
  (score > threshold, the score being the maximum of the opened residual),
- false alarms: share of defect-free test images flagged the same way,
- balanced accuracy: (recall + 1 - false alarms) / 2, the image-level decision's quality,
- pixel IoU: |predicted n truth| / |predicted u truth| over all test pixels pooled
  (predicted = the opened mask at the threshold).

Writes DIR/results.json and DIR/results.md (one table, the command line that made it).
"""
from __future__ import annotations

import argparse
import json
import pickle
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ssimae.core.thresholds import threshold_from_maps
from ssimae.io.files import atomic_write_text
from ssimae.runs.checkpoint import load_checkpoint
from ssimae.data.datasets import load_dataset
from ssimae.inference.detector import Detector
from ssimae.inference.test_set import score_test_set, validation_images
from ssimae.io.images import read_image
from ssimae.core.metrics import pixel_iou
from ssimae.core.morphology import gray_opening

# (label, settings changes): each rule with the options it is measured at
RULES = [
    ("max-region", {"threshold_rule": "max-region", "min_defect_area": 0}),
    ("max-region, area 200", {"threshold_rule": "max-region", "min_defect_area": 200}),
    ("fpr 1e-2", {"threshold_rule": "fpr", "target_fpr": 1e-2}),
    ("fpr 1e-3", {"threshold_rule": "fpr", "target_fpr": 1e-3}),
    ("fpr 1e-4", {"threshold_rule": "fpr", "target_fpr": 1e-4}),
    ("quantile 0.5", {"threshold_rule": "quantile", "quantile": 0.5}),
    ("quantile 0.9", {"threshold_rule": "quantile", "quantile": 0.9}),
]


def run_maps(run: str, data: str | None, cache: Path) -> dict:
    """Validation and test maps of one run (cached): {val, test, masks, types}."""
    f = cache / (Path(run).resolve().as_posix().strip("/").replace("/", "_") + ".pkl")
    if f.exists():
        return pickle.loads(f.read_bytes())
    settings = load_checkpoint(run)["settings"]
    kw = dict(settings.train.data)
    root = data or kw.pop("root", None)
    kw.pop("root", None)
    dataset = load_dataset(root, **kw, progress=False, log=lambda *_: None)
    det = Detector.load(run)
    val = [det.residual_map(read_image(p)) for p in validation_images(dataset, settings)]
    scores = score_test_set(det, dataset, progress=True)
    out = {"val": val, "test": scores.maps[det.default_residual], "masks": scores.masks, "types": scores.types}
    cache.mkdir(parents=True, exist_ok=True)
    f.write_bytes(pickle.dumps(out))
    return out


def measure(maps: dict, settings) -> list[dict]:
    """One row per rule: threshold, recall, false-alarm rate, pixel IoU."""
    opened = [gray_opening(m, settings.opening_diameter) for m in maps["test"]]
    scores = np.array([o.max() for o in opened])
    defective = np.array([t != "good" for t in maps["types"]])
    rows = []
    for label, change in RULES:
        t = threshold_from_maps(maps["val"], replace(settings, **change))
        rows.append({"rule": label, "threshold": t, "recall": float((scores[defective] > t).mean()),
                     "false_alarms": float((scores[~defective] > t).mean()),
                     "pixel_iou": pixel_iou([o > t for o in opened], maps["masks"]),
                     "n_defective": int(defective.sum()), "n_good": int((~defective).sum()),
                     "n_val": len(maps["val"])})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="run folder (repeat)")
    ap.add_argument("--label", action="append", help="a name per run for the table (default: the folder)")
    ap.add_argument("--data", help="dataset root (default: each run's own)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default="/tmp/threshold-rules-cache")
    args = ap.parse_args(argv)
    labels = args.label or [str(r) for r in args.run]
    results = {}
    for run, label in zip(args.run, labels):
        maps = run_maps(run, args.data, Path(args.cache))
        results[label] = measure(maps, Detector.load(run).settings)
        print(label, json.dumps(results[label], indent=1), flush=True)
    out = Path(args.out)
    command = "python benchmarks/threshold_rules.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    atomic_write_text(out / "results.json", json.dumps({"command": command, "results": results}, indent=2))
    lines = [f"Command: `{command}`", "",
             "| run | rule | threshold | recall (defective images) | false alarms (defect-free) "
             "| balanced accuracy | pixel IoU |",
             "|---|---|---|---|---|---|---|"]
    for label, rows in results.items():
        for r in rows:
            lines.append(f"| {label} | {r['rule']} | {r['threshold']:.4g} | {r['recall']:.3f} "
                         f"({r['n_defective']}) | {r['false_alarms']:.3f} ({r['n_good']}) "
                         f"| {(r['recall'] + 1 - r['false_alarms']) / 2:.3f} | {r['pixel_iou']:.3f} |")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
