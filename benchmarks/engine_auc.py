"""The AUCs each way of scoring gives on a run's own test set: the torch engine against the
ONNX export, float32 against int8, the sliding window against whole-image passes.

    python benchmarks/engine_auc.py RUN [RUN ...] [--configs torch-window,torch-whole,onnx-fp32-whole,onnx-int8-whole]
        [--out docs/results/speed/engine-auc]

Each run is scored on the test set it was trained for (its recorded data root, split and
scale, as ``benchmarks/suite.py`` does) in every configuration; the int8 export is calibrated
on the run's validation images (``ssimae export --int8``). Prints and writes
OUT/engine_auc.md (pixel ROC AUC, PRO, image ROC AUC per run and configuration, and each
configuration's change against the first) and OUT/engine_auc.json. No timing: speed is
``benchmarks/bench_inference.py``'s.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import exports, machine_info  # noqa: E402

CONFIGS = ("torch-window", "torch-whole", "onnx-fp32-window", "onnx-fp32-whole", "onnx-int8-window", "onnx-int8-whole")


def detector(run: Path, config: str, onnx_files: dict):
    """The scorer of ``config`` ("ENGINE[-PRECISION]-TILING"), or None where it does not apply
    (whole-image tiling of a model that is not fully convolutional, a missing export)."""
    from ssimae.inference.detector import Detector
    from ssimae.models import get_model
    from ssimae.runs.checkpoint import load_run
    from ssimae.runtime import OnnxDetector

    parts = config.split("-")
    train = load_run(run).settings.train
    if parts[-1] == "whole" and get_model(train.model).geometry(train.params) is None:
        return None
    if parts[0] == "torch":
        det = Detector.load(run, "cpu")
    else:
        path = onnx_files.get(parts[1])
        if not isinstance(path, Path):
            return None
        det = OnnxDetector.load(path)
    return det.with_settings(tiling=parts[-1])


def metrics(det, dataset) -> dict:
    from ssimae.core.metrics import evaluate_maps
    from ssimae.inference.test_set import score_test_set

    scores = score_test_set(det, dataset, progress=False)
    m = evaluate_maps(scores.maps[det.default_residual], scores.masks, scores.types, det.opening_diameter,
                      det.settings.image_score)
    return {"pixel_roc_auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"], "image_roc_auc": m["image_roc_auc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--configs", default="torch-window,torch-whole,onnx-fp32-whole,onnx-int8-whole")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from ssimae.data.datasets import load_dataset
    from ssimae.errors import SsimaeError
    from ssimae.runs.checkpoint import load_run

    configs = args.configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configurations {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            loaded = load_run(run)
            data = dict(loaded.settings.train.data)
            dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
            precisions = sorted({c.split("-")[1] for c in configs if c.startswith("onnx")})
            onnx_files = exports(run, Path(tmp) / str(i), precisions) if precisions else {}
            for config in configs:
                try:
                    det = detector(run, config, onnx_files)
                    row = metrics(det, dataset) if det is not None else {"skipped": "not applicable"}
                except SsimaeError as e:
                    row = {"skipped": str(e)}
                rows.append({"run": str(run), "model": loaded.settings.train.model, "config": config, **row})
                print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/engine_auc.py " + " ".join(sys.argv[1:])
    lines = [f"`{command}`", "", f"Machine: {machine_info()}", "",
             "| run | configuration | pixel ROC AUC | PRO | image ROC AUC | pixel / image change against the first |",
             "|---|---|---|---|---|---|"]
    first: dict = {}
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['run']} | {r['config']} | ({r['skipped']}) | | | |")
            continue
        base = first.setdefault(r["run"], r)
        lines.append(f"| {r['run']} | {r['config']} | {r['pixel_roc_auc']:.4f} | {r['pro']:.4f} | {r['image_roc_auc']:.4f} | "
                     f"{r['pixel_roc_auc'] - base['pixel_roc_auc']:+.4f} / "
                     f"{r['image_roc_auc'] - base['image_roc_auc']:+.4f} |")
    from ssimae.io.files import atomic_write_text
    from ssimae.io.folders import RunLock

    args.out.mkdir(parents=True, exist_ok=True)
    with RunLock(args.out, "benchmarks/engine_auc.py"):  # one writer of the folder at a time
        atomic_write_text(args.out / "engine_auc.md", "\n".join(lines) + "\n")
        atomic_write_text(args.out / "engine_auc.json", json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
