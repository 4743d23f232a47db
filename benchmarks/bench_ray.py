"""Benchmark: archive scoring on Ray (``ssimae predict --ray``) against single-process predict.

In one run, on the same images and the same trained model:

* single-process ``predict`` with one torch thread (``torch.set_num_threads(1)``);
* ``predict --ray`` with 1 actor of 1 thread, then 2 actors of 1 thread each, on one local
  Ray instance started once (its start-up is not counted; each job's actor start-up is);
* two ``predict`` processes of 1 thread each on the two halves of the images, started at
  once, without Ray: what two workers reach on this machine (its ceiling for Ray).

Reports images per second of each (over the whole job, and steady: after each actor's first
chunk, without the actors' start-up, which a long archive amortises)
and the speed-up over the one-thread predict (issue #22's target: 2 actors >= 1.7x). The
outputs of every configuration are checked to be identical
to predict's (predictions.csv byte for byte). Without ``--run`` a model is trained first
(the paper's network, d = 100, a few patches: its speed is that of any run).

    .venv/bin/python benchmarks/bench_ray.py                    # 256 images of 256x256, ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_ray.py --n 256 --repeat 3 --json docs/results/distributed/ray.json   # ~16 min
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

import numpy as np


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """n gray textures of size x size (the demo's texture: 1/8 good test parts, 1/8 of each
    defect type, the rest training parts) in ``folder``; returns the input folders (train/, test/)."""
    from ssimae.data.demo_data import DEFECT_TYPES, make_demo_data

    per_type = max(1, n // 8)
    make_demo_data(folder, seed=0, size=size, n_train=max(4, n - (1 + len(DEFECT_TYPES)) * per_type),
                   n_test_good=per_type, n_test_per_type=per_type)
    return [folder / "train", folder / "test"]


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


def two_processes(run: Path, files: list, work: Path, engine: str) -> float:
    """Seconds for two ``predict`` processes of one thread each, started at once, to score
    alternate chunks of 8 of ``files`` (each from a list file): the speed-up two workers
    reach on this machine without Ray."""
    import subprocess

    work.mkdir(parents=True)
    code = ("import sys, torch; torch.set_num_threads(1); from ssimae.commands.predict import predict; "
            "predict(sys.argv[1], [sys.argv[2]], sys.argv[3], engine=sys.argv[4], progress=False, log=lambda *a: None)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    lists = []
    for h in (0, 1):
        lists.append(work / f"half{h}.txt")
        lists[-1].write_text("".join(f"{f}\n" for i, (f, _) in enumerate(files) if (i // 8) % 2 == h))
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run), str(lst), str(work / f"out{h}"), engine], env=env)
             for h, lst in enumerate(lists)]
    if any(p.wait() != 0 for p in procs):
        sys.exit("a predict process on half of the inputs failed")
    return time.perf_counter() - t0


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
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds of the three; medians reported")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    import torch

    from ssimae.cluster.ray_scoring import predict_on_ray
    from ssimae.commands.predict import predict
    from ssimae.data.inputs import collect_inputs
    from ssimae.io.images import read_image

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    inputs = [Path(args.images)] if args.images else make_images(tmp / "data", args.n, args.size)
    run = Path(args.run) if args.run else train_run(Path(args.images) if args.images else tmp / "data", tmp / "run")
    if args.engine == "onnx":
        from ssimae.inference.export import export_onnx

        run = export_onnx(run, tmp / "export").parent
    files = collect_inputs(inputs)
    n, size = len(files), read_image(files[0][0]).shape[:2]
    quiet = {"progress": False, "log": lambda *_: None}

    torch.set_num_threads(1)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="warning")
    reference = None
    rounds: list[list[dict]] = []
    try:
        for k in range(args.repeat):  # interleaved rounds: a slow spell of the machine hits every configuration
            t0 = time.perf_counter()
            predict(run, inputs, tmp / f"single{k}", engine=args.engine, **quiet)
            single = time.perf_counter() - t0
            csv = (tmp / f"single{k}" / "predictions.csv").read_bytes()
            if reference is not None and csv != reference:
                sys.exit("predict gave other predictions in another round")
            reference = csv
            results = [{"configuration": "predict, 1 thread", "seconds": single, "images_per_s": n / single,
                        "steady_images_per_s": n / single}]
            for actors in (1, 2):
                out = tmp / f"ray{actors}-{k}"
                events = tmp / f"events{actors}-{k}.txt"  # each actor appends "pid time images-so-far" after a chunk
                t0 = time.perf_counter()
                predict_on_ray(run, inputs, out, actors=actors, threads=1, engine=args.engine,
                               after_batch=_event_logger(str(events)), **quiet)
                secs = time.perf_counter() - t0
                if (out / "predictions.csv").read_bytes() != reference:
                    sys.exit(f"predict --ray with {actors} actor(s) differs from predict")
                results.append({"configuration": f"--ray, {actors} actor{'s' if actors > 1 else ''} x 1 thread",
                                "seconds": secs, "images_per_s": n / secs,
                                "steady_images_per_s": steady_rate(events)})
            # the machine's own ceiling for 2 workers, without Ray: two predict processes of 1 thread
            # on the two halves of the inputs (alternate chunks of 8), started at once
            secs = two_processes(run, files, tmp / f"halves{k}", args.engine)
            results.append({"configuration": "2 predict processes x 1 thread, half each (no Ray)",
                            "seconds": secs, "images_per_s": n / secs, "steady_images_per_s": None})
            for r in results:
                r["speedup"] = r["images_per_s"] / results[0]["images_per_s"]
                steady = r["steady_images_per_s"]
                r["steady_speedup"] = None if steady is None else steady / results[0]["images_per_s"]
                # what the job spent besides scoring at its steady rate: Ray's and the actors' start-up
                r["startup_s"] = None if steady is None else r["seconds"] - n / steady
            rounds.append(results)
            print(f"round {k + 1}: " + ", ".join(f"{r['configuration']} {r['speedup']:.2f}x" for r in results),
                  file=sys.stderr)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = [dict(configuration=rs[0]["configuration"],
                    **{key: median([r[key] for r in rs]) for key in MEDIANS}) for rs in zip(*rounds)]
    print(f"\n{n} images of {'x'.join(map(str, size))} ({args.engine} engine), {os.cpu_count()} CPUs, "
          f"median of {args.repeat} interleaved round(s); speed-ups against predict's images/s of the same round. "
          f"images/s: over the whole job, start-up counted; steady: after each actor's first chunk\n")
    print(TABLE_HEAD)
    for r in summary:
        print(table_row(r))
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "size": list(size), "engine": args.engine,
                                               "cpus": os.cpu_count(), "repeat": args.repeat,
                                               "load_before": load_before, "load_after": os.getloadavg()[0],
                                               "median": summary, "rounds": rounds}, indent=2) + "\n")


MEDIANS = ("seconds", "images_per_s", "speedup", "steady_images_per_s", "steady_speedup", "startup_s")
TABLE_HEAD = ("| configuration | seconds | images/s | vs predict | steady images/s | steady vs predict | start-up s |\n"
              "|---|---:|---:|---:|---:|---:|---:|")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def table_row(r: dict) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)
    return (f"| {r['configuration']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | {r['speedup']:.2f}x | "
            f"{f(r['steady_images_per_s'], '.2f')} | {f(r['steady_speedup'], '.2f')}{'' if r['steady_speedup'] is None else 'x'} | "
            f"{f(r['startup_s'], '.1f')} |")


if __name__ == "__main__":
    main()
