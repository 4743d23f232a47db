"""Screening of models beyond the paper against the paper's at a stated budget (issue #20).

    python benchmarks/screen_models.py --data DATA --out DIR --variants inpaint-w16,ssim-fast [--seeds 0,1]

For every variant and seed: trains with ``ssimae train`` (the command is stored), scores the
test set once with each residual the model offers, smoothed with several sigmas, and
records pixel ROC AUC, PRO (FPR 0.3), per-type AUC and the image ROC AUC of several image
scores (maximum of the opened map, mean of its top 1 %, and the defect area above the
stored pixel threshold). Budgets are patch counts (so AUCs do not depend on the machine);
the minutes do, and are comparable only between runs made one after the other on a quiet
machine. Writes DIR/results.json and DIR/results.md; runs that exist are reused.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from recipe_ablation import training_time  # noqa: E402  (benchmarks/: (patches, minutes, patches/s) of a run)
from scipy import ndimage as ndi

DEMO = ["--epochs", "8", "--patches-per-epoch", "1000"]
INPAINT = ["--model", "inpaint", "--batch-size", "8", "--lr", "1e-3", "--stride", "64", "--smooth", "4"]
VARIANTS = {
    "ssim-fast": ["--model", "ssim", "--recipe", "fast", "--epochs", "8", "--patches-per-epoch", "1500"],
    "l2-fast": ["--model", "l2", "--recipe", "fast", "--epochs", "8", "--patches-per-epoch", "1500"],
    "inpaint-w16": [*INPAINT, *DEMO],
    "inpaint-w16-c64": [*INPAINT, *DEMO, "--train-crop", "64"],
    "inpaint-w8-c64": [*INPAINT, *DEMO, "--train-crop", "64", "--unet-width", "8"],
    "inpaint-w16-c64-4k": [*INPAINT, "--epochs", "4", "--patches-per-epoch", "1000", "--train-crop", "64"],
    "inpaint-w16-c64-cells28": [*INPAINT, *DEMO, "--train-crop", "64", "--cell-sizes", "2,8"],
    # Magnetic Tile (--extra '--scale 0.25'): 10 x 2,000 patches, the budget of the SSIM-AE / l2-AE rows
    # of docs/results/recipe/magnetic-tile-scale
    "mt-inpaint-c28": [*INPAINT, "--epochs", "10", "--patches-per-epoch", "2000", "--train-crop", "64",
                       "--cell-sizes", "2,8"],
    "mt-inpaint-c416": [*INPAINT, "--epochs", "10", "--patches-per-epoch", "2000", "--train-crop", "64",
                        "--cell-sizes", "4,16"],
    "mt-inpaint-c832": [*INPAINT, "--epochs", "10", "--patches-per-epoch", "2000", "--train-crop", "64",
                        "--cell-sizes", "8,32"],
    "mt-draem-recon": ["--model", "draem", "--batch-size", "8", "--lr", "1e-3", "--stride", "64", "--smooth", "4",
                       "--epochs", "10", "--patches-per-epoch", "2000", "--train-crop", "64", "hooks:seg_weight=0"],
    "inpaint": ["--model", "inpaint", "--batch-size", "8", "--lr", "1e-3", "--stride", "64", "--smooth", "4", *DEMO],
    "mt-draem-recon-20k": ["--model", "draem-recon", "--batch-size", "8", "--lr", "1e-3", "--stride", "64",
                           "--smooth", "8", "--epochs", "10", "--patches-per-epoch", "2000"],
    "mt-draem-recon-10k": ["--model", "draem-recon", "--batch-size", "8", "--lr", "1e-3", "--stride", "64",
                           "--smooth", "8", "--epochs", "5", "--patches-per-epoch", "2000"],
    "mt-draem-recon-40k": ["--model", "draem-recon", "--batch-size", "8", "--lr", "1e-3", "--stride", "64",
                           "--smooth", "8", "--epochs", "20", "--patches-per-epoch", "2000"],
    "draem-w16-c64-recon": ["--model", "draem", "--batch-size", "8", "--lr", "1e-3", "--stride", "64", "--smooth", "4",
                            *DEMO, "--train-crop", "64", "hooks:seg_weight=0"],
    "draem-w16-c64": ["--model", "draem", "--batch-size", "8", "--lr", "1e-3", "--stride", "64", "--smooth", "4",
                      *DEMO, "--train-crop", "64"],
    "inpaint-w8": [*INPAINT, "--unet-width", "8", *DEMO],
    "inpaint-w8-16k": [*INPAINT, "--unet-width", "8", "--epochs", "16", "--patches-per-epoch", "1000"],
    "inpaint-w16-maskch": [*INPAINT, *DEMO, "hooks:mask_channel=1"],
    "inpaint-w16-ssim": [*INPAINT, *DEMO, "hooks:ssim_weight=1"],
    "inpaint-w16-c4-32": [*INPAINT, *DEMO, "--cell-sizes", "4,8,16,32"],
    "inpaint-w16-s30": [*INPAINT, *DEMO, "--stride", "30"],
}
SIGMAS = (0, 2, 4, 8)
TOP = 0.01  # image score "top1%": mean of the largest 1 % of a map's values


def image_score_table(opened: list[np.ndarray], threshold: float | None) -> dict[str, np.ndarray]:
    """Candidate image scores of opened maps: max, top-1 % mean, area above ``threshold``."""
    out = {"max": np.array([m.max() for m in opened]),
           "top1%": np.array([np.sort(m.ravel())[-max(1, int(TOP * m.size)):].mean() for m in opened])}
    if threshold is not None:
        out["area"] = np.array([(m > threshold).sum() for m in opened], dtype=float)
    return out


def score(run: Path) -> dict:
    """{"<residual>/s<sigma>": {"auc", "pro", "image_auc": {score: auc}, "per_type"}} on the run's test set."""
    from sklearn.metrics import roc_auc_score

    from ssimae.core.metrics import evaluate_maps
    from ssimae.core.morphology import gray_opening
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.detector import Detector
    from ssimae.inference.test_set import score_test_set
    from ssimae.runs.checkpoint import load_run

    loaded = load_run(run)
    data = dict(loaded.settings.train.data)
    dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
    det = Detector.load(loaded)
    sigma_run = det.settings.smooth
    det = det.with_settings(smooth=0.0)  # raw maps; the sigmas below smooth them
    residuals = det.model.residuals()
    t0 = time.perf_counter()
    scores = score_test_set(det, dataset, residuals, progress=False)
    seconds = time.perf_counter() - t0
    labels = np.array([m.any() for m in scores.masks])
    out = {"score_seconds": seconds}
    for name in residuals:
        for sigma in SIGMAS:
            maps = scores.maps[name] if sigma == 0 else [ndi.gaussian_filter(m, sigma, mode="reflect")
                                                          for m in scores.maps[name]]
            m = evaluate_maps(maps, scores.masks, scores.types, det.opening_diameter)
            opened = [gray_opening(x, det.opening_diameter) for x in maps]
            own = name == det.default_residual and sigma == sigma_run
            images = image_score_table(opened, det.threshold if own else None)
            out[f"{name}/s{sigma}"] = {"auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"],
                                       "image_auc": {k: float(roc_auc_score(labels, v)) for k, v in images.items()},
                                       "per_type": {k: v["pixel_roc_auc"] for k, v in m["per_type"].items()}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--extra", default="", help="more ssimae train options for every variant (e.g. '--scale 0.25')")
    args = ap.parse_args()
    out = Path(args.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            key = f"{variant}/seed{seed}"
            if key in results:
                continue
            run = out / variant / f"seed{seed}"
            options = [o for o in VARIANTS[variant] if not o.startswith("hooks:")] + shlex.split(args.extra)
            hooks = [o[len("hooks:"):] for o in VARIANTS[variant] if o.startswith("hooks:")]
            train_args = ["--data", args.data, "--out", str(run), "--seed", str(seed), "--quiet", *options]
            cmd = ["ssimae", "train", *train_args]
            if not (run / "model.pt").exists():
                print("$", shlex.join(cmd), hooks, flush=True)
                runner = [sys.executable, "-c", HOOKED, json.dumps(hooks)] if hooks else [sys.executable, "-m",
                                                                                           "ssimae.cli"]
                subprocess.run(runner + ["train", *train_args], check=True, stdout=subprocess.DEVNULL)
            patches, minutes, rate = training_time(run)
            results[key] = {"command": shlex.join(cmd), "hooks": hooks, "patches": patches, "train_minutes": minutes,
                            "patches_per_s": rate, "scores": score(run)}
            results_path.write_text(json.dumps(results, indent=1))
            s = results[key]["scores"]
            best = max((k for k in s if k != "score_seconds"), key=lambda k: s[k]["auc"])
            print(f"{key}: best {best} pixel {s[best]['auc']:.3f} pro {s[best]['pro']:.3f} image "
                  f"{s[best]['image_auc']} ({minutes:.1f} min training, {s['score_seconds']:.0f} s scoring)",
                  flush=True)
    write_table(results, out / "results.md")


# Screening levers that are not options: set InpaintParams fields the CLI does not expose.
HOOKED = """
import json, sys, dataclasses
import ssimae.models.inpaint, ssimae.models.draem
hooks = dict(h.split("=") for h in json.loads(sys.argv[1]))
for cls in (ssimae.models.inpaint.InpaintParams, ssimae.models.draem.DraemParams):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in hooks.items():
        if k in fields:
            f = fields[k]
            f.default = type(f.default)(float(v)) if not isinstance(f.default, bool) else bool(int(v))
    cls.__init__.__defaults__ = tuple(fields[f].default for f in fields if fields[f].init)
from ssimae.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def write_table(results: dict, path: Path) -> None:
    lines = ["| variant / seed | patches | train min | patches/s | best map | pixel AUC | PRO | image AUC (max / top1% "
             "/ area) | per type |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        s = r["scores"]
        for k in (k for k in s if k != "score_seconds"):
            if k.endswith("/s0") or k.endswith("/s4"):
                img = " / ".join(f"{v:.3f}" for v in s[k]["image_auc"].values())
                types = ", ".join(f"{t} {v:.3f}" for t, v in s[k]["per_type"].items())
                lines.append(f"| {key} | {r['patches']} | {r['train_minutes']:.1f} | {r['patches_per_s']:.0f} | {k} | "
                             f"{s[k]['auc']:.3f} | {s[k]['pro']:.3f} | {img} | {types} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
