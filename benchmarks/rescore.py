"""Inference settings of trained suite runs compared without training again: residual x smoothing.

    python benchmarks/rescore.py SUITE_DIR [SUITE_DIR ...] --out rescore.json
        [--residuals own,msgms,ssim,l2] [--smooth 0,4,8,16] [--configs inpaint,ssim-fast] [--sets ...]

Each run of the suite folders (their ``results.json``) is scored once on its test set: the
network's outputs are computed once per image and every residual of ``--residuals`` is taken
from them, unsmoothed, then smoothed with each sigma of ``--smooth`` at the run's working
resolution (as ``InferenceSettings.smooth`` does: :func:`ssimae.inference.scorer.smooth_map`
before the map is resized back to the image) and evaluated with the run's opening and image
score: pixel ROC AUC, PRO (to FPR 0.3), image ROC AUC, pixel ROC AUC per defect type. The
run's own setting is one of the variants, so the table also checks this script against the
suite's numbers. Results per run go to ``--out`` (JSON, written after every run, so an
interrupted study keeps what it measured) and a table per configuration x variant (means over
sets and seeds) is printed; the study is in docs/results/suite/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ssimae.io.files import atomic_write_text


def variant_maps(residuals: list[str], sigmas: list[float]):
    """A replacement for :func:`ssimae.inference.scorer.finish` that returns, for the residual
    names it is asked for, one map per (residual, sigma), keyed "residual@sigma"; the maps are
    smoothed at the padded-crop resolution and then resized to the image, as ``finish`` does."""
    from ssimae.inference import scorer

    def finish(image_shape, size, padded, outputs, _names, ctx):
        h, w = size
        recon = scorer._float32(outputs["recon"][..., :h, :w])
        shape = tuple(image_shape[:2])
        maps = {}
        for name in residuals:
            raw = scorer._float32(scorer.residual_map(name, padded, outputs, ctx)[:h, :w])
            for s in sigmas:
                m = scorer.smooth_map(raw, s)
                maps[f"{name}@{s:g}"] = scorer.resize_map(m, shape) if (h, w) != shape else m
        return recon, {k: v.astype(np.float32) for k, v in maps.items()}

    return finish


def rescore_run(run: Path, residuals: list[str], sigmas: list[float]) -> dict:
    """{"own": "residual@sigma" of the run's settings, "variants": {key: metrics}} of one run."""
    from ssimae.core.metrics import evaluate_maps
    from ssimae.data.datasets import load_dataset
    from ssimae.inference import scorer
    from ssimae.inference.detector import Detector
    from ssimae.inference.test_set import score_test_set
    from ssimae.runs.checkpoint import load_run

    loaded = load_run(run)
    data = dict(loaded.settings.train.data)
    dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
    det = Detector.load(loaded)
    own = det.default_residual
    names = [own if r == "own" else r for r in residuals]
    names = list(dict.fromkeys(n for n in names if n in det.model.compare_residuals or n == own))
    keys = [f"{n}@{s:g}" for n in names for s in sigmas]
    original = scorer.finish
    scorer.finish = variant_maps(names, sigmas)
    try:
        scores = score_test_set(det, dataset, residuals=keys, progress=False)
    finally:
        scorer.finish = original
    from suite import local_defects

    local = local_defects(scores.masks)
    out = {}
    for k in keys:
        m = evaluate_maps(scores.maps[k], scores.masks, scores.types, det.opening_diameter, det.settings.image_score)
        loc = evaluate_maps([scores.maps[k][i] for i in local], [scores.masks[i] for i in local],
                            [scores.types[i] for i in local], det.opening_diameter, det.settings.image_score)
        out[k] = {"pixel_auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"], "image_auc": m["image_roc_auc"],
                  "pixel_auc_local": loc["pixel_roc_auc"],
                  "per_type": {t: v["pixel_roc_auc"] for t, v in m["per_type"].items()}}
    return {"own": f"{own}@{det.settings.smooth:g}", "variants": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suites", nargs="+", type=Path, help="suite output folders (each with results.json)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--residuals", default="own,msgms,ssim,l2")
    ap.add_argument("--smooth", default="0,4,8,16")
    ap.add_argument("--configs", default=None, help="only these configurations (comma-separated)")
    ap.add_argument("--sets", default=None, help="only these sets (comma-separated)")
    a = ap.parse_args(argv)
    residuals = a.residuals.split(",")
    sigmas = [float(s) for s in a.smooth.split(",")]
    from ssimae.io.folders import RunLock

    a.out.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(a.out.parent, "benchmarks/rescore.py"):  # --out is read, then rewritten after every run
        results = rescore_all(a, residuals, sigmas)
    print_table(results)


def rescore_all(a, residuals: list[str], sigmas: list[float]) -> dict:
    """:func:`main`'s loop inside the lock of ``--out``'s folder: every run not yet in ``--out``."""
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    for suite in a.suites:
        for key, r in json.loads((suite / "results.json").read_text()).items():
            config, set_name, _ = key.split("/")
            if (a.configs and config not in a.configs.split(",")) or (a.sets and set_name not in a.sets.split(",")):
                continue
            if key in results:
                continue
            words = r["command"].split()
            run = Path(words[words.index("--out") + 1])
            results[key] = {"run": str(run), **rescore_run(run, residuals, sigmas)}
            own = results[key]["variants"].get(results[key]["own"])
            print(key, "own", results[key]["own"], json.dumps({k: round(v, 4) for k, v in (own or {}).items()
                                                               if k != "per_type"}), flush=True)
            atomic_write_text(a.out, json.dumps(results, indent=1))
    return results


def print_table(results: dict) -> None:
    """Per configuration and variant: pixel / image AUC per set (seed means) and the mean."""
    by = {}
    for key, r in results.items():
        config, set_name, _ = key.split("/")
        for v, m in r["variants"].items():
            by.setdefault((config, v), {}).setdefault(set_name, []).append(m)
    sets = sorted({k.split("/")[1] for k in results})
    print("| configuration | variant | " + " | ".join(sets) + " | mean pixel / image |")
    print("|---|---|" + "---|" * len(sets) + "---|")
    for (config, v), per in sorted(by.items()):
        cells, px, im = [], [], []
        for s in sets:
            if s not in per:
                cells.append("")
                continue
            p = float(np.mean([m["pixel_auc"] for m in per[s]]))
            i = float(np.mean([m["image_auc"] for m in per[s]]))
            px.append(p)
            im.append(i)
            cells.append(f"{p:.3f} / {i:.3f}")
        mean = f"{np.mean(px):.3f} / {np.mean(im):.3f}" if len(px) == len(sets) else ""
        print(f"| {config} | {v} | " + " | ".join(cells) + f" | {mean} |")


if __name__ == "__main__":
    main()
