"""The dev suite: one configuration trained and scored on every dev set, one table.

    python benchmarks/suite.py --configs ssim-fast,draem --out suite [--sets demo,magnetic-tile,visa-fryum]
        [--seeds 0] [--shared ../shared]

For every configuration, set and seed: ``ssimae train`` at the set's stated patch budget
(:data:`SETS`: epochs x patches per epoch, the same for every configuration, so the AUCs do not
depend on the machine), then the test set scored once with the run's own residual, smoothing and
image score, and recorded: pixel ROC AUC, PRO (to FPR 0.3), image ROC AUC, good parts flagged
and defective parts found at the run's stored thresholds, training minutes (from its log),
seconds per test image, and, per configuration, the mean and the worst set. Defaults are chosen
by the mean and the worst set, never by one set. Writes OUT/results.json (every run, its
command) and OUT/results.md; runs that exist are reused. The minutes depend on the machine and
on what else runs on it; the AUCs and counts do not.

Sets (``--shared``: the folder holding ``datasets/``; the demo is made by ``ssimae make-demo-data``):
- demo: the synthetic texture (gray, 512 px, small defects), 12,000 patches;
- magnetic-tile: real gray texture photographs (blowholes, cracks, fray), image scale 0.25,
  20,000 patches;
- visa-fryum: real colour photographs of an object, read as gray, scale 0.5 (750 x 500), 24,000 patches.

The demo's thresholds: a run's validation images are a split of its training crops, which
overlap each other almost entirely, so they score lower than new good parts and the image
threshold set on them rejects most good test parts. A demo run is therefore calibrated on
the demo data's 20 calibration images, defect-free crops of the test region that share no
pixel with a training crop, after training and before scoring (``ssimae calibrate RUN --good
demo-data/calibration/good``, once: ``ssimae.commands.calibrate.calibrate_once``, so a rerun
finds it done), and the image-threshold rules are compared on those images too (the other
sets: on the validation images). Results recorded before this rest on the validation
images: ``--rescore`` them.

``--budget-scale S`` multiplies every budget (for a quick look: 0.25); the tables state it.
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
from ssimae.io.files import atomic_write_text
from ssimae.io.folders import RunLock
from recipe_ablation import training_time  # noqa: E402  (benchmarks/: (patches, minutes, patches/s) of a run)

SETS = {
    # name: (dataset under --shared/datasets, or None for the demo; train options; epochs, patches per epoch)
    "demo": (None, [], 8, 1500),
    "magnetic-tile": ("magnetic-tile", ["--scale", "0.25"], 10, 2000),
    "visa-fryum": ("visa-fryum", ["--scale", "0.5"], 12, 2000),
}
_INPAINT = ["--model", "inpaint"]  # its recipe: batch 8, lr 1e-3, stride 64, smoothing 4, top-1 % image score
CONFIGS = {
    "ssim-fast": ["--model", "ssim", "--recipe", "fast"],  # the paper's SSIM-AE, the CPU recipe
    "l2-fast": ["--model", "l2", "--recipe", "fast"],
    "inpaint": _INPAINT,  # its defaults: cells 2 and 8 (the demo's choice), width 16
    "inpaint-w8": [*_INPAINT, "--unet-width", "8"],  # U-Net of half the width (8-16-32-64): a quarter of the FLOPs
    "inpaint-w12": [*_INPAINT, "--unet-width", "12"],  # 12-24-48-96: 0.56 of the FLOPs
    "inpaint-w16": [*_INPAINT, "--unet-width", "16"],  # = inpaint (its default width), named beside inpaint-w8
    "inpaint-riad": [*_INPAINT, "--cell-sizes", "2,4,8,16"],  # RIAD's cells
    "inpaint-c8-32": [*_INPAINT, "--cell-sizes", "8,16,32"],  # cells for large defects
    "inpaint-c2-8-32": [*_INPAINT, "--cell-sizes", "2,8,32"],  # small and large
    "draem": ["--model", "draem"],  # segmentation head, Perlin foreign textures (DRAEM), its recipe (cosine schedule)
    "draem-s05": ["--model", "draem", "--scale", "0.5"],  # Magnetic Tile at twice its scale (tiles 52-194 px)
    "draem-constant": ["--model", "draem", "--schedule", "constant"],  # the recipe before: constant learning rate
    "draem-mixed": ["--model", "draem", "--anomalies", "mixed"],  # + cut-and-paste (NSA) and texture removal
    "draem-mixed-constant": ["--model", "draem", "--anomalies", "mixed", "--schedule", "constant"],
    "draem-cutpaste": ["--model", "draem", "--anomalies", "cutpaste"],
    "draem-perlin-removal": ["--model", "draem", "--anomalies", "perlin-removal"],  # DRAEM's or texture removal
    "draem-cos": ["--model", "draem", "--schedule", "cosine"],  # the learning rate annealed to 0 (now draem's recipe)
    "draem-mixed-cos": ["--model", "draem", "--anomalies", "mixed", "--schedule", "cosine"],
    "inpaint-cos": [*_INPAINT, "--schedule", "cosine"],
    "ssim-fast-color": ["--model", "ssim", "--recipe", "fast", "--color"],  # images read as RGB (the colour sets)
    "inpaint-color": [*_INPAINT, "--color"],
    "inpaint-c8-32-color": [*_INPAINT, "--cell-sizes", "8,16,32", "--color"],
    "ssim-fast-s025": ["--model", "ssim", "--recipe", "fast", "--scale", "0.25"],  # visa-fryum at half its scale
    "inpaint-s025": [*_INPAINT, "--scale", "0.25"],
    "inpaint-c8-32-s025": [*_INPAINT, "--cell-sizes", "8,16,32", "--scale", "0.25"],
    "auto-draem": ["--model", "auto", "--candidates", "ssim-fast,inpaint,draem"],  # --model auto, DRAEM screened too
    "draem-recon": ["--model", "draem-recon"],
    "draem-recon-mixed": ["--model", "draem-recon", "--anomalies", "mixed"],
}
# Fused configurations (``ssimae fuse``): the runs of these configurations for the same set and
# seed (trained first where missing), their standardised maps added, calibrated on the set's
# calibration images (the demo) or the first run's validation images.
FUSIONS = {
    "fusion-draem-inpaint": ("draem", "inpaint"),
    "fusion-draem-inpaint-w8": ("draem", "inpaint-w8"),
    "fusion-draem-inpaint-c8-32": ("draem", "inpaint-c8-32"),
    "fusion-draem-ssim-fast": ("draem", "ssim-fast"),
}


def demo_data(folder: Path) -> Path:
    """The demo dataset (``ssimae make-demo-data``), made once under ``folder``; one made before
    there were calibration images is made again (its other images come out byte-identical)."""
    from ssimae.data.demo_data import CALIBRATION_DIR, make_demo_data

    root = folder / "demo-data"
    if not (root / "train").exists():
        subprocess.run([sys.executable, "-m", "ssimae.cli", "make-demo-data", str(root)], check=True,
                       stdout=subprocess.DEVNULL)
    elif not (root / CALIBRATION_DIR).is_dir():
        make_demo_data(root, overwrite=True)
    return root


def calibration_images(set_name: str, data: Path) -> Path | None:
    """The folder a run of ``set_name`` is calibrated on: the demo's calibration images; None
    for the other sets (their thresholds rest on the validation images)."""
    from ssimae.data.demo_data import CALIBRATION_DIR

    return data / CALIBRATION_DIR if SETS[set_name][0] is None else None


def ensure_run(out: Path, config: str, set_name: str, data: Path, seed: int, scale: float) -> Path:
    """OUT/runs/CONFIG/SET/seedS, trained (and, on the demo, calibrated) unless it is there."""
    run = out / "runs" / config / set_name / f"seed{seed}"
    if not (run / "config.json").exists() or not (run / "model.pt").exists():
        cmd = train_command(config, set_name, data, run, seed, scale)
        print("$ ssimae", shlex.join(cmd), flush=True)
        subprocess.run([sys.executable, "-m", "ssimae.cli", *cmd], check=True, stdout=subprocess.DEVNULL)
    calibration = calibration_images(set_name, data)
    if calibration is not None:
        from ssimae.commands.calibrate import calibrate_once

        calibrate_once(run, calibration, progress=False)
    return run


def fuse_command(members: list[Path], run: Path, calibration: Path | None) -> list[str]:
    """The ``ssimae fuse`` arguments of a fused suite run."""
    return ["fuse", *map(str, members), "--out", str(run), "--quiet",
            *(["--images", str(calibration)] if calibration is not None else [])]


def train_command(config: str, set_name: str, data: Path, run: Path, seed: int, scale: float) -> list[str]:
    """The ``ssimae train`` arguments of one suite run (a configuration's own options come after
    the set's, so a configuration that sets ``--scale`` overrides the set's scale)."""
    _, extra, epochs, per_epoch = SETS[set_name]
    return ["train", "--data", str(data), "--out", str(run), "--seed", str(seed), "--quiet", *extra,
            *CONFIGS[config], "--epochs", str(max(1, round(epochs * scale))), "--patches-per-epoch", str(per_epoch)]


LOCAL_AREA = 0.05  # a defect covering less than this share of its image is "local"


def local_defects(masks) -> list[int]:
    """Indices of the images whose defect covers less than LOCAL_AREA of the image (the good
    images among them). On visa-fryum the other 20 of 100 defective images (two fryums stuck
    together, the whole object marked) hold 94 % of the defect pixels, so the pooled pixel AUC
    mostly asks where the object is: the image's own brightness scores 0.92 there. The pixel
    AUC of the local defects is reported beside it."""
    return [i for i, m in enumerate(masks) if np.asarray(m).mean() < LOCAL_AREA]


def score_run(run: Path, calibration: Path | None = None) -> dict:
    """The suite's metrics of a trained run on its test set, at its own residual, smoothing,
    image score and stored thresholds; the image-threshold rules compared on the scores of the
    ``calibration`` images (a folder; None: the run's own validation images) (good parts
    flagged, defective parts found at each rule's threshold); and the selection proxy on its
    validation images (:mod:`ssimae.inference.selection`)."""
    from ssimae.core.metrics import evaluate_maps
    from ssimae.core.morphology import gray_opening
    from ssimae.core.thresholds import IMAGE_THRESHOLD_RULES, image_threshold
    from ssimae.core.verdict import IMAGE_SCORES, image_score
    from sklearn.metrics import roc_auc_score
    from ssimae.data.datasets import load_dataset
    from ssimae.data.inputs import collect_inputs
    from ssimae.inference.detector import Detector
    from ssimae.inference.selection import proxy_scores
    from ssimae.inference.test_set import score_test_set, validation_images
    from ssimae.runs.checkpoint import load_run

    from ssimae.inference.fusion import is_fusion, read_fusion

    loaded = load_run(run / read_fusion(run)["members"][0] if is_fusion(run) else run)  # a fused run: its first member's data
    data = dict(loaded.settings.train.data)
    dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
    det = Detector.load(run if is_fusion(run) else loaded)
    t0 = time.perf_counter()
    scores = score_test_set(det, dataset, progress=False)
    seconds = (time.perf_counter() - t0) / len(scores.masks)
    maps = scores.maps[det.default_residual]
    m = evaluate_maps(maps, scores.masks, scores.types, det.opening_diameter, det.settings.image_score)
    local = local_defects(scores.masks)
    m_local = evaluate_maps([maps[i] for i in local], [scores.masks[i] for i in local],
                            [scores.types[i] for i in local], det.opening_diameter, det.settings.image_score)
    s = det.settings

    def opened_score(x):
        return image_score(gray_opening(x, det.opening_diameter), s.image_score)

    opened = [gray_opening(x, det.opening_diameter) for x in maps]
    image_scores = np.array([image_score(o, s.image_score) for o in opened])
    good = np.array([t == "good" for t in scores.types])
    by_rule = {rule: float(roc_auc_score(~good, [image_score(o, rule) for o in opened])) for rule in IMAGE_SCORES}

    def counts(threshold):
        flagged = image_scores > threshold if threshold is not None else np.ones(len(maps), bool)
        return {"good_flagged": int(flagged[good].sum()), "defective_found": int(flagged[~good].sum())}

    val = validation_images(dataset, loaded.settings)
    rule_images = val if calibration is None else [f for f, _ in collect_inputs([calibration])]
    rule_scores = [opened_score(det.residual_map(s.preprocess.read(p))) for p in rule_images]
    rules = {r: {"threshold": image_threshold(rule_scores, s.image_fpr, r),
                 **counts(image_threshold(rule_scores, s.image_fpr, r))} for r in IMAGE_THRESHOLD_RULES}
    return {"pixel_auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"], "image_auc": m["image_roc_auc"],
            "pixel_auc_local": m_local["pixel_roc_auc"], "local_images": len(local),
            **counts(s.image_threshold), "good": int(good.sum()), "defective": int((~good).sum()),
            "per_type": {k: v["pixel_roc_auc"] for k, v in m["per_type"].items()},
            "image_threshold": s.image_threshold, "pixel_threshold": s.threshold, "seconds_per_image": seconds,
            "image_threshold_images": s.image_threshold_images, "validation_images": len(val),
            "rule_images": f"{len(rule_images)} {'validation' if calibration is None else 'calibration'}",
            "image_threshold_rules": rules, "image_auc_by_score": by_rule, "proxy": proxy_scores(det, val)}


def summary(results: dict, config: str, sets: list[str], seeds: list[int]) -> dict | None:
    """Mean and worst set of a configuration's seed means, over the seeds each set has (None
    unless every set has at least one)."""
    per_set = {}
    for name in sets:
        runs = [r for r in (results.get(f"{config}/{name}/seed{s}") for s in seeds) if r]
        if not runs:
            return None
        per_set[name] = {k: float(np.mean([r["metrics"][k] for r in runs])) for k in ("pixel_auc", "pro", "image_auc")}
    return {k: {"mean": float(np.mean([v[k] for v in per_set.values()])),
                "worst": float(min(v[k] for v in per_set.values()))} for k in ("pixel_auc", "pro", "image_auc")}


def write_table(results: dict, configs: list[str], sets: list[str], seeds: list[int], path: Path,
                scale: float) -> None:
    lines = [f"Budgets: {', '.join(f'{n} {SETS[n][2] * SETS[n][3]:,} patches' for n in sets)}"
             + (f" (x {scale:g})" if scale != 1 else "") + ".", "",
             "| configuration | set | seed | pixel ROC AUC | local defects | PRO | image ROC AUC | good flagged "
             "| defective found | train min | s / image |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        for n in sets:
            for s in seeds:
                r = results.get(f"{c}/{n}/seed{s}")
                if r is None:
                    continue
                m = r["metrics"]
                local = f"{m['pixel_auc_local']:.3f}" if "pixel_auc_local" in m else ""
                lines.append(f"| {c} | {n} | {s} | {m['pixel_auc']:.3f} | {local} | {m['pro']:.3f} | {m['image_auc']:.3f} | "
                             f"{m['good_flagged']} of {m['good']} | {m['defective_found']} of {m['defective']} | "
                             f"{r['train_minutes']:.1f} | {m['seconds_per_image']:.2f} |")
    lines += ["", "| configuration | pixel AUC mean / worst | PRO mean / worst | image AUC mean / worst |",
              "|---|---|---|---|"]
    for c in configs:
        sm = summary(results, c, sets, seeds)
        if sm:
            lines.append(f"| {c} | " + " | ".join(f"{sm[k]['mean']:.3f} / {sm[k]['worst']:.3f}"
                                                  for k in ("pixel_auc", "pro", "image_auc")) + " |")
    lines += proxy_lines(results, sets) + rule_lines(results, configs, sets, seeds) + score_lines(results, configs)
    atomic_write_text(path, "\n".join(lines) + "\n")


def proxy_lines(results: dict, sets: list[str]) -> list[str]:
    """Per set: the selection proxy of each run beside its true pixel and image AUC, and the
    Spearman rank correlation of the proxy with each over the runs of that set."""
    from scipy.stats import spearmanr

    lines = ["", "Selection proxy (stains and scratches pasted into the held-back good images) against the truth:", "",
             "| set | runs | proxy ranking (best first) | true pixel AUC ranking | true image AUC ranking "
             "| Spearman proxy ~ pixel | Spearman proxy ~ image |", "|---|---|---|---|---|---|---|"]
    for name in sets:
        runs = {k: r["metrics"] for k, r in results.items() if k.split("/")[1] == name and "proxy" in r["metrics"]}
        if len(runs) < 2:
            continue
        keys = list(runs)
        proxy = [runs[k]["proxy"]["proxy"] for k in keys]

        def order(values):
            return ", ".join(f"{keys[i].split('/')[0]} {values[i]:.3f}" for i in np.argsort(values)[::-1])

        rho = [spearmanr(proxy, [runs[k][m] for k in keys])[0] for m in ("pixel_auc", "image_auc")]
        lines.append(f"| {name} | {len(keys)} | {order(proxy)} | {order([runs[k]['pixel_auc'] for k in keys])} | "
                     f"{order([runs[k]['image_auc'] for k in keys])} | {rho[0]:.2f} | {rho[1]:.2f} |")
    return lines


def rule_lines(results: dict, configs: list[str], sets: list[str], seeds: list[int]) -> list[str]:
    """Good parts flagged / defective parts found at each image-threshold rule."""
    lines = ["", "Image-threshold rules on the same defect-free images (the demo: its calibration images; the other "
             "sets: the validation images) (good parts flagged / defective parts found):",
             "", "| configuration | set | images | order | gaussian |", "|---|---|---|---|---|"]
    for c in configs:
        for n in sets:
            for s in seeds:
                m = results.get(f"{c}/{n}/seed{s}", {}).get("metrics", {})
                rules = m.get("image_threshold_rules")
                if rules:
                    cells = " | ".join(f"{rules[r]['good_flagged']} of {m['good']} / {rules[r]['defective_found']} of "
                                       f"{m['defective']}" for r in ("order", "gaussian"))
                    images = m.get("rule_images", f"{m['validation_images']} validation")
                    lines.append(f"| {c} | {n} | {images} | {cells} |")
    return lines


def score_lines(results: dict, configs: list[str]) -> list[str]:
    """Image ROC AUC of each run under every image score (:data:`ssimae.core.verdict.IMAGE_SCORES`),
    the same maps: how the image-score default is chosen."""
    rows = [(k, r["metrics"]["image_auc_by_score"]) for k, r in results.items()
            if k.split("/")[0] in configs and "image_auc_by_score" in r["metrics"]]
    if not rows:
        return []
    rules = list(rows[0][1])
    lines = ["", "Image ROC AUC by image score (the same opened maps):", "",
             "| run | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
    lines += [f"| {k} | " + " | ".join(f"{v[r]:.3f}" for r in rules) + " |" for k, v in rows]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", required=True, help=f"comma-separated, of: {', '.join([*CONFIGS, *FUSIONS])}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    ap.add_argument("--budget-scale", type=float, default=1.0)
    ap.add_argument("--rescore", action="store_true", help="score the runs again (after a change of the scoring)")
    ap.add_argument("--merge", nargs="*", default=[], metavar="DIR",
                    help="first take the results of these suite folders into OUT (runs made in parallel)")
    ap.add_argument("--table-only", action="store_true",
                    help="train and score nothing: write the table of the results OUT holds (after --merge)")
    args = ap.parse_args(argv)
    configs, sets = args.configs.split(","), args.sets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in configs + sets:
        if name not in CONFIGS and name not in SETS and name not in FUSIONS:
            ap.error(f"unknown configuration or set {name!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, "benchmarks/suite.py"):  # one suite process per folder: results.json is read, then rewritten
        run_suite(args, out, configs, sets, seeds)


def run_suite(args, out: Path, configs: list[str], sets: list[str], seeds: list[int]) -> None:
    """:func:`main` inside the folder's lock: merge, train and score what is missing, write the tables."""
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for other in args.merge:
        results.update(json.loads((Path(other) / "results.json").read_text()))
    atomic_write_text(path, json.dumps(results, indent=1))
    for config in [] if args.table_only else configs:
        for name in sets:
            folder = SETS[name][0]
            for seed in seeds:
                key = f"{config}/{name}/seed{seed}"
                if key in results and not args.rescore:
                    continue
                data = demo_data(out) if folder is None else Path(args.shared) / "datasets" / folder
                run = out / "runs" / config / name / f"seed{seed}"
                calibration = calibration_images(name, data)
                if config in FUSIONS:
                    members = [ensure_run(out, m, name, data, seed, args.budget_scale) for m in FUSIONS[config]]
                    cmd = fuse_command(members, run, calibration)
                    if not (run / "fusion.json").exists():
                        print("$ ssimae", shlex.join(cmd), flush=True)
                        subprocess.run([sys.executable, "-m", "ssimae.cli", *cmd], check=True, stdout=subprocess.DEVNULL)
                    times = [training_time(m) for m in members]
                    patches, minutes = sum(t[0] for t in times), sum(t[1] for t in times)
                else:
                    cmd = train_command(config, name, data, run, seed, args.budget_scale)
                    ensure_run(out, config, name, data, seed, args.budget_scale)
                    patches, minutes, _ = training_time(run)
                metrics = score_run(run, calibration)
                results[key] = {"command": "ssimae " + shlex.join(cmd), "patches": patches, "train_minutes": minutes,
                                "metrics": metrics}
                if config in FUSIONS:  # the members' own commands, run first
                    results[key]["member_commands"] = [
                        "ssimae " + shlex.join(train_command(m, name, data, out / "runs" / m / name / f"seed{seed}", seed,
                                                             args.budget_scale)) for m in FUSIONS[config]]
                if calibration is not None and config not in FUSIONS:
                    results[key]["calibrate"] = f"ssimae calibrate {shlex.quote(str(run))} --good " \
                                                f"{shlex.quote(str(calibration))}"
                atomic_write_text(path, json.dumps(results, indent=1))
                print(f"{key}: pixel {metrics['pixel_auc']:.3f} PRO {metrics['pro']:.3f} image "
                      f"{metrics['image_auc']:.3f}, good flagged {metrics['good_flagged']}/{metrics['good']}, "
                      f"found {metrics['defective_found']}/{metrics['defective']} ({minutes:.1f} min)", flush=True)
    write_table(results, list(dict.fromkeys([k.split("/")[0] for k in results])), sets, seeds, out / "results.md",
                args.budget_scale)


if __name__ == "__main__":
    main()
