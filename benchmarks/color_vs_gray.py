"""Colour vs gray on colour data (issue #11, part 6): does ``--color`` find defects that only
show in colour, and what does it cost on defects that gray sees too?

    python benchmarks/color_vs_gray.py --out DIR [--epochs 8 --patches-per-epoch 1500 --recipe fast]

Writes the colour demo data (:func:`ssimae.data.demo_data.make_color_demo_data`: brick crops tinted,
"cut" = the gray demo's cut, "hue" = an isoluminant stain) to DIR/data, then runs
``ssimae compare`` on it twice with the same models and patch budget, once reading the images
gray (the paper, the default) and once with ``--color``, and writes DIR/results.md and
DIR/results.json: pixel ROC AUC of each model's own residual, pooled and per defect type.
Budgets are patch counts, so the AUCs do not depend on the machine's speed; runs that exist
are reused.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="ssim,l2")
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--patches-per-epoch", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    data = out / "data"
    if not data.exists():
        from ssimae.data.demo_data import make_color_demo_data

        make_color_demo_data(data, seed=0)
    results = {}
    for mode, extra in (("gray", []), ("color", ["--color"])):
        dest = out / mode
        cmd = ["ssimae", "compare", "--data", str(data), "--out", str(dest), "--models", args.models,
               "--recipe", args.recipe, "--epochs", str(args.epochs), "--patches-per-epoch",
               str(args.patches_per_epoch), "--seed", str(args.seed), "--quiet", *extra]
        if not (dest / "results.json").exists():
            print("$ " + shlex.join(cmd), flush=True)
            subprocess.run([sys.executable, "-m", "ssimae.cli", *cmd[1:]], check=True)
        results[mode] = {"command": shlex.join(cmd), "rows": json.loads((dest / "results.json").read_text())}
    lines = ["| model | images read as | pixel ROC AUC | cut | hue (isoluminant) | PRO |", "|---|---|---|---|---|---|"]
    for mode in results:
        for row in results[mode]["rows"]:
            if row.get("residual") != _own(row["model"]):
                continue
            pt = row.get("per_type") or {}
            lines.append(f"| {row['model']} | {mode} | {row['pixel_roc_auc']:.3f} | {pt.get('cut', {}).get('pixel_roc_auc', float('nan')):.3f} | "
                         f"{pt.get('hue', {}).get('pixel_roc_auc', float('nan')):.3f} | {row['pro_auc_fpr30']:.3f} |")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + "\n".join(
        f"- {m}: `{r['command']}`" for m, r in results.items()) + "\n")
    print("\n".join(lines))


def _own(model: str) -> str:
    from ssimae.models import get_model

    return get_model(model).default_residual


if __name__ == "__main__":
    main()
