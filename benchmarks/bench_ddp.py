"""Benchmark: distributed training with torchrun, 1 and 2 processes of 1 thread each.

In one run, the same training (the paper's network, d = 100, batch 32 over all processes,
``--epochs`` x ``--patches`` patches of the demo texture, or of ``--data``) is run by

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node N -m ssimae train ...

for N = 1 and 2. Reports training patches per second (all processes together) from the
runs' train_log.csv, without the first epoch (start-up, image loading) unless there is
only one, the speed-up of 2 processes over 1 (issue #22's target: >= 1.6x), and how far the
2-process parameters are from the 1-process ones (relative norm of the difference of their
updates; ~1e-4 from float rounding).

    .venv/bin/python benchmarks/bench_ddp.py                           # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_ddp.py --epochs 2 --patches 64   # quick check that it works
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_torchrun(nproc: int, data: Path, out: Path, args) -> float:
    """Train with ``nproc`` one-thread processes; returns the wall-clock seconds."""
    import ssimae

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(ssimae.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "ssimae", "train", "--data", str(data), "--out", str(out), "--model", args.model,
           "--epochs", str(args.epochs), "--patches-per-epoch", str(args.patches), "--batch-size", str(args.batch_size),
           "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"torchrun with {nproc} process(es) failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def patches_per_s(run: Path) -> float:
    """Mean patches/s of the logged epochs, the first left out when there are more."""
    rows = list(csv.DictReader((run / "train_log.csv").open()))
    rows = rows[1:] if len(rows) > 1 else rows
    return sum(float(r["patches"]) for r in rows) / sum(float(r["patches"]) / float(r["patches_per_s"]) for r in rows)


def update_error(run: Path, reference: Path, seed: int = 0) -> float:
    """|update of run - update of reference| / |update of reference|, all parameters as one vector."""
    import torch

    from ssimae.runs.checkpoint import load_checkpoint
    from ssimae.models import get_model

    ckpt = load_checkpoint(reference)
    t = ckpt["settings"].train
    torch.manual_seed(seed)
    init = get_model(t.model).build(t.latent_dim, t.params, t.norm, channels=1).state_dict()
    a, b = load_checkpoint(run)["model"], ckpt["model"]
    da = torch.cat([(a[k] - init[k]).flatten() for k in init])
    db = torch.cat([(b[k] - init[k]).flatten() for k in init])
    return ((da - db).norm() / db.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patches", type=int, default=640, help="patches per epoch (all processes together)")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (all processes together)")
    ap.add_argument("--model", default="ssim")
    ap.add_argument("--data", default=None, help="dataset root (default: the demo dataset, generated)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    try:
        if args.data:
            data = Path(args.data)
        else:
            from ssimae.data.demo_data import make_demo_data

            data = make_demo_data(tmp / "data", seed=0)
        results = []
        for nproc in (1, 2):
            out = tmp / f"run{nproc}"
            wall = run_torchrun(nproc, data, out, args)
            results.append({"processes": nproc, "threads_each": 1, "wall_s": wall, "patches_per_s": patches_per_s(out)})
        base = results[0]["patches_per_s"]
        for r in results:
            r["speedup"] = r["patches_per_s"] / base
        results[1]["update_error_vs_1"] = update_error(tmp / "run2", tmp / "run1")
        print(f"\n{args.model}, {args.epochs} epochs x {args.patches} patches, global batch {args.batch_size}, "
              f"{os.cpu_count()} CPUs; patches/s of all processes, first epoch left out\n")
        print("| processes x threads | wall s | patches/s | vs 1 process |")
        print("|---|---:|---:|---:|")
        for r in results:
            print(f"| {r['processes']} x 1 | {r['wall_s']:.1f} | {r['patches_per_s']:.1f} | {r['speedup']:.2f}x |")
        print(f"\nparameters of 2 processes vs 1: relative update difference {results[1]['update_error_vs_1']:.1e}")
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": vars(args), "cpus": os.cpu_count(), "results": results},
                                                  indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
