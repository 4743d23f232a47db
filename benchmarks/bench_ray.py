"""Benchmark: archive scoring on Ray (``ssimae predict --ray``) against single-process predict.

In one run, on the same images and the same trained model:

* single-process ``predict`` with one torch thread (``torch.set_num_threads(1)``);
* ``predict --ray`` with 1 actor of 1 thread, then 2 actors of 1 thread each, on one local
  Ray instance started once (its start-up is not counted; each job's actor start-up is).

Reports images per second of each (over the whole job, and steady: after each actor's first
chunk, without the actors' start-up, which a long archive amortises)
and the speed-up over the one-thread predict (issue #22's target: 2 actors >= 1.7x). The
outputs of every configuration are checked to be identical
to predict's (predictions.csv byte for byte). Without ``--run`` a model is trained first
(the paper's network, d = 100, a few patches: its speed is that of any run).

    .venv/bin/python benchmarks/bench_ray.py                    # 256 images of 256x256, ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_ray.py --n 24 --size 160  # quick check that it works
    .venv/bin/python benchmarks/bench_ray.py --run RUN --images DIR
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, n: int, size: int) -> Path:
    """n gray textures of size x size (the demo's texture, defects included) in ``folder``."""
    from ssimae.data.demo_data import make_demo_data

    per_type = max(1, n // 8)
    make_demo_data(folder, seed=0, size=size, n_train=max(4, n - 4 * per_type), n_test_good=1,
                   n_test_per_type=per_type)
    return folder


def train_run(data: Path, out: Path) -> Path:
    from ssimae.cli.main import main

    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--patches-per-epoch", "64",
                 "--quiet"]) == 0
    return out


def _event_logger(path: str):
    def log(count: int) -> None:
        import os
        import time

        with open(path, "a") as f:
            f.write(f"{os.getpid()} {time.time()} {count}\n")

    return log


def steady_rate(events: Path) -> float | None:
    """Images per second after each actor's first chunk: (images - those of the first chunks)
    / (last chunk's end - the earliest end of a first chunk)."""
    first: dict[str, tuple[float, int]] = {}
    last_t, total = 0.0, {}
    for line in events.read_text().splitlines():
        pid, t, count = line.split()
        first.setdefault(pid, (float(t), int(count)))
        last_t, total[pid] = max(last_t, float(t)), int(count)
    start = min(t for t, _ in first.values())
    images = sum(total.values()) - sum(c for _, c in first.values())
    return images / (last_t - start) if last_t > start and images > 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="images to score (made from the demo texture)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--run", default=None, help="a trained run (default: train a small one)")
    ap.add_argument("--images", default=None, help="folder of images to score (default: generated)")
    ap.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    import torch

    from ssimae.cluster.ray_scoring import predict_on_ray
    from ssimae.commands.predict import predict
    from ssimae.data.inputs import collect_inputs

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    images = Path(args.images) if args.images else make_images(tmp / "data", args.n, args.size)
    run = Path(args.run) if args.run else train_run(images, tmp / "run")
    if args.engine == "onnx":
        from ssimae.inference.export import export_onnx

        run = export_onnx(run, tmp / "export").parent
    n = len(collect_inputs([images]))
    quiet = dict(progress=False, log=lambda *_: None)

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    predict(run, [images], tmp / "single", engine=args.engine, **quiet)
    single = time.perf_counter() - t0
    reference = (tmp / "single" / "predictions.csv").read_bytes()

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="warning")
    results = [{"configuration": "predict, 1 thread", "seconds": single, "images_per_s": n / single,
                "steady_images_per_s": n / single}]
    try:
        for actors in (1, 2):
            out = tmp / f"ray{actors}"
            events = tmp / f"events{actors}.txt"  # each actor appends "pid time images-so-far" after a chunk
            t0 = time.perf_counter()
            predict_on_ray(run, [images], out, actors=actors, threads=1, engine=args.engine,
                           after_batch=_event_logger(str(events)), **quiet)
            secs = time.perf_counter() - t0
            if (out / "predictions.csv").read_bytes() != reference:
                sys.exit(f"predict --ray with {actors} actor(s) differs from predict")
            results.append({"configuration": f"--ray, {actors} actor{'s' if actors > 1 else ''} x 1 thread",
                            "seconds": secs, "images_per_s": n / secs,
                            "steady_images_per_s": steady_rate(events)})
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[0]["images_per_s"]
    print(f"\n{n} images of {images} ({args.engine} engine), {os.cpu_count()} CPUs. images/s: over the whole "
          f"job, actor start-up counted; steady: after each actor's first chunk\n")
    print("| configuration | seconds | images/s | vs predict | steady images/s | steady vs predict |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        r["speedup"] = r["images_per_s"] / base
        steady = r["steady_images_per_s"]
        r["steady_speedup"] = None if steady is None else steady / base
        print(f"| {r['configuration']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | {r['speedup']:.2f}x | "
              + ("n/a | n/a |" if steady is None else f"{steady:.2f} | {r['steady_speedup']:.2f}x |"))
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "engine": args.engine, "cpus": os.cpu_count(),
                                               "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
