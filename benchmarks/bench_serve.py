"""Benchmark of ``ssimae serve`` (#22): a bounded load on 127.0.0.1, against scoring the same
images in-process, in one run.

    python benchmarks/bench_serve.py --out docs/results/serve        # demo run, both engines
    python benchmarks/bench_serve.py --source deploy/carpet --images carpet/test --engines onnx --out OUT
    python benchmarks/bench_serve.py --requests 8 --clients 1,4 --out /tmp/bench-serve   # quick check

For each engine (onnx: the export run by onnxruntime; torch: the run), in this order:

1. **in-process**: the bench process loads the detector itself and scores the request images
   one at a time (decode the file's bytes + ``predict_many`` of one image: what the server
   does per request, without HTTP), and ``ssimae predict``'s function on the image folder in
   this process (images/s, writing its heat maps, masks, overlays and report);
2. **server**: ``python -m ssimae.serve SOURCE --port 0`` in a subprocess (on 127.0.0.1 only),
   then ``--requests`` POST /v1/predict requests at each client count (``--clients``,
   default 1, 4, 16: concurrent httpx async clients on one keep-alive connection each),
   after a warm-up pass. Every answer is checked (status 200 and the JSON's score
   equal to the in-process score of the same image, for a deterministic model; a sampling
   model such as the VAE draws other noise in other batches: ``--no-score-check``);
   anything else is an error.

Reports per level: requests/s, p50 / p99 latency (ms), errors, the server's mean batch size,
and its resident memory (VmRSS, sampled every 50 ms from /proc during the whole load: after
a warm-up pass over every client count with a quarter of the requests, the peak and at the
end, in MiB; flat = the end within 10% of the start, all samples in results.json). The
in-process scoring also runs the images 8 to a call: that images/s over the one-at-a-time
images/s is what batching can gain on the machine (the ceiling of the 16-client level). Targets of
the issue: p99 at 1 client within 1.3x the in-process p99 of the same images; requests/s at
16 clients at least 1.5x those at 1 client; 0 errors; flat memory. Both the server and the
in-process scoring use ``--threads`` (default: the engine's own, all cores). Writes
``results.json`` and ``results.md`` (a table) to ``--out``.

Without ``--source`` the bench makes the demo dataset (256 x 256 images) and a run of the
paper's network (d = 100) trained for a few steps (its weights do not change the timing),
and exports it, under ``--work`` (default: a temporary folder). Timings need a quiet
machine: the load average before and after is recorded.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 4
TARGET_P99 = 1.3
TARGET_SCALING = 1.5
BATCH_IMAGES = 8  # in-process images per predict_many call for the batching ceiling (the server's default batch)


def make_demo_run(work: Path) -> tuple[Path, Path, Path]:
    """(run folder, export folder, test image folder) of a demo run made under ``work``."""
    from ssimae.cli.main import main as cli
    from ssimae.data.demo_data import make_demo_data

    data, run, export = work / "data", work / "run", work / "export"
    if not (data / "test").is_dir():
        make_demo_data(data, seed=0, size=256, n_train=4, n_test_good=4, n_test_per_type=2)
    if not (run / "model.pt").is_file():
        assert cli(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--patches-per-epoch", "32",
                    "--batch-size", "16", "--quiet"]) == 0
    if not (export / "model.onnx").is_file():
        assert cli(["export", str(run), "--out", str(export)]) == 0
    return run, export, data / "test"


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def in_process(source: Path, engine: str, threads: int | None, payloads: list[bytes], folder: Path,
               out: Path) -> dict:
    """Scores of the payloads, one at a time, in this process (decode + predict_many of one
    image), and ``ssimae predict`` of the folder in this process."""
    from ssimae.io.images import decode_image
    from ssimae.commands.predict import predict
    from ssimae.serve.command import load_detector

    det, _ = load_detector(source, engine, "cpu", threads)
    color = det.settings.preprocess.color
    for data in payloads[:WARMUP]:
        det.predict_many([decode_image(data, color)])
    times, scores = [], []
    for data in payloads:
        t0 = time.perf_counter()
        (p,) = det.predict_many([decode_image(data, color)])
        times.append(time.perf_counter() - t0)
        scores.append(p.score)
    # the ceiling of batching on this machine: images/s when BATCH_IMAGES images go through predict_many together
    images = [decode_image(data, color) for data in payloads]
    t0 = time.perf_counter()
    for i in range(0, len(images), BATCH_IMAGES):
        det.predict_many(images[i:i + BATCH_IMAGES])
    batched = len(images) / (time.perf_counter() - t0)
    n_files = sum(1 for _ in folder.rglob("*.png"))
    t0 = time.perf_counter()
    predict(source, [folder], out / f"predict-{engine}", engine=engine, progress=False, log=lambda *a: None)
    predict_s = time.perf_counter() - t0
    return {"latency": percentiles(times), "images_per_s": len(times) / sum(times), "scores": scores,
            "batched_images_per_s": batched, "batch_images": BATCH_IMAGES,
            "predict_images": n_files, "predict_images_per_s": n_files / predict_s}


class MemorySampler:
    """VmRSS of a process every ``period`` seconds, in a thread: (seconds since start, MiB)."""

    def __init__(self, pid: int, period: float = 0.05):
        self.pid, self.period, self.samples, self._stop = pid, period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mib(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            rss = self.rss_mib()
            if rss is not None:
                self.samples.append((round(time.monotonic() - t0, 3), round(rss, 2)))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def start_server(source: Path, engine: str, threads: int | None, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """``python -m ssimae.serve`` on 127.0.0.1, any free port: (process, base URL)."""
    import httpx

    argv = [sys.executable, "-m", "ssimae.serve", str(source), "--engine", engine, "--host", "127.0.0.1",
            "--port", "0", "--quiet", *(["--threads", str(threads)] if threads else []), *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    url = "http://" + line.split("http://")[1].split("/")[0]
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not answer /healthz")
            time.sleep(0.1)


async def load(url: str, payloads: list[bytes], expected: list[float] | None, clients: int) -> dict:
    """``len(payloads)`` requests from ``clients`` concurrent clients: latencies and errors."""
    import httpx

    order = iter(range(len(payloads)))
    latencies, errors = [], []

    async def client(http):
        for i in order:
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/predict", content=payloads[i])
                ok = r.status_code == 200 and (expected is None or r.json()["score"] == expected[i])
                problem = None if ok else f"{r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as err:
                problem = f"{type(err).__name__}: {err}"
            latencies.append(time.perf_counter() - t0)
            if problem:
                errors.append(problem)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(payloads), "requests_per_s": len(payloads) / wall,
            **percentiles(latencies), "errors": len(errors), "error_examples": errors[:3]}


def bench_engine(source: Path, engine: str, args, payloads: list[bytes], folder: Path, out: Path) -> dict:
    import httpx

    print(f"[{engine}] in-process scoring of {len(payloads)} requests' images ...", flush=True)
    local = in_process(source, engine, args.threads, payloads, folder, out)
    expected = None if args.no_score_check else local["scores"]
    proc, url = start_server(source, engine, args.threads, args.server_args)
    levels = []
    try:
        sampler = MemorySampler(proc.pid)
        with sampler:
            # warm-up: a pass over every load with a quarter of the requests, so that the batches of
            # every size have been allocated once and the allocator has reached its working size
            n = min(len(payloads), max(2 * max(args.clients), len(payloads) // 4))
            for clients in args.clients:
                asyncio.run(load(url, payloads[:n], expected and expected[:n], clients))
            start_rss = sampler.rss_mib()
            for clients in args.clients:
                before = httpx.get(url + "/healthz").json()
                level = asyncio.run(load(url, payloads, expected, clients))
                after = httpx.get(url + "/healthz").json()
                level["mean_batch"] = (after["images"] - before["images"]) / max(1, after["batches"] - before["batches"])
                level["rss_mib_end"] = sampler.rss_mib()
                levels.append(level)
                print(f"[{engine}] {clients:>2} clients: {level['requests_per_s']:.2f} req/s, "
                      f"p50 {level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, errors {level['errors']}, "
                      f"mean batch {level['mean_batch']:.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    rss = [s[1] for s in sampler.samples]
    memory = {"start_mib": start_rss, "peak_mib": max(rss), "end_mib": rss[-1], "samples": sampler.samples}
    memory["flat"] = bool(memory["end_mib"] <= 1.10 * memory["start_mib"])
    one = next((lv for lv in levels if lv["clients"] == 1), None)
    many = next((lv for lv in levels if lv["clients"] == 16), None)
    targets = {"errors_0": all(lv["errors"] == 0 for lv in levels), "memory_flat": memory["flat"]}
    if one:
        targets["p99_ratio_1_client"] = one["p99_ms"] / local["latency"]["p99_ms"]
        targets["p99_within_1.3x"] = targets["p99_ratio_1_client"] <= TARGET_P99
    if one and many:
        targets["throughput_ratio_16_vs_1"] = many["requests_per_s"] / one["requests_per_s"]
        targets["throughput_16_at_least_1.5x"] = targets["throughput_ratio_16_vs_1"] >= TARGET_SCALING
        targets["batching_ceiling"] = local["batched_images_per_s"] / local["images_per_s"]
    local.pop("scores")
    return {"engine": engine, "source": str(source), "in_process": local, "server": levels, "memory": memory,
            "targets": targets}


def markdown(results: dict) -> str:
    lines = [f"# ssimae serve: bounded load on 127.0.0.1 ({results['requests']} requests per level)", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['cpus']} CPUs, load average "
             f"{results['load_before'][0]:.2f} before / {results['load_after'][0]:.2f} after; threads: "
             f"{results['threads'] or 'engine default'}; images: {results['images']} ({results['image_shape']})", ""]
    for r in results["engines"]:
        local, mem, t = r["in_process"], r["memory"], r["targets"]
        lines += [f"## {r['engine']}", "",
                  "| load | requests/s | p50 ms | p99 ms | errors | mean batch | server RSS at end (MiB) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
                  f"| in-process, one image at a time | {local['images_per_s']:.2f} | {local['latency']['p50_ms']:.1f} "
                  f"| {local['latency']['p99_ms']:.1f} | - | 1 | - |"]
        lines += [f"| server, {lv['clients']} client{'s' if lv['clients'] > 1 else ''} | {lv['requests_per_s']:.2f} "
                  f"| {lv['p50_ms']:.1f} | {lv['p99_ms']:.1f} | {lv['errors']} | {lv['mean_batch']:.2f} "
                  f"| {lv['rss_mib_end']:.0f} |" for lv in r["server"]]
        lines.append(f"| in-process, {local['batch_images']} images per call (the ceiling of batching) | "
                     f"{local['batched_images_per_s']:.2f} | - | - | - | {local['batch_images']} | - |")
        lines += ["", f"`ssimae predict` in one process (writes all outputs): {local['predict_images_per_s']:.2f} "
                  f"images/s over {local['predict_images']} images.  ",
                  f"Server memory: {mem['start_mib']:.0f} MiB after warm-up, peak {mem['peak_mib']:.0f} MiB, "
                  f"{mem['end_mib']:.0f} MiB at the end ({'flat' if mem['flat'] else 'NOT flat'}).  "]
        if "p99_ratio_1_client" in t:
            lines.append(f"p99 at 1 client / in-process p99: {t['p99_ratio_1_client']:.2f} (target <= {TARGET_P99}: "
                         f"{'met' if t['p99_within_1.3x'] else 'NOT met'}).  ")
        if "throughput_ratio_16_vs_1" in t:
            lines.append(f"requests/s at 16 clients / at 1 client: {t['throughput_ratio_16_vs_1']:.2f} (target >= "
                         f"{TARGET_SCALING}: {'met' if t['throughput_16_at_least_1.5x'] else 'NOT met'}); "
                         f"in-process images/s with {local['batch_images']} images per call / one at a time: "
                         f"{t['batching_ceiling']:.2f} (what batching can give on this machine).  ")
        lines += [f"errors: {'0' if t['errors_0'] else 'SOME'}", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=None, help="run folder (torch) or export folder (onnx)")
    ap.add_argument("--images", type=Path, default=None, help="folder of request images (default: the demo test set)")
    ap.add_argument("--engines", default="onnx,torch", help="comma-separated (default onnx,torch)")
    ap.add_argument("--requests", type=int, default=200, help="requests per client count (default 200)")
    ap.add_argument("--clients", default="1,4,16", help="client counts (default 1,4,16)")
    ap.add_argument("--threads", type=int, default=None, help="threads of server and in-process scoring")
    ap.add_argument("--work", type=Path, default=None, help="where the demo run is made/reused (default: temporary)")
    ap.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    ap.add_argument("--no-score-check", action="store_true",
                    help="do not compare the server's scores with the in-process ones (sampling models)")
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[],
                    help="further options for the server (e.g. --max-wait-ms 2), last on the line")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        sources, folder = {}, args.images
        if args.source is None:
            run, export, test = make_demo_run(work)
            sources, folder = {"torch": run, "onnx": export}, folder or test
        else:
            sources = {e: args.source for e in engines}
            if folder is None:
                raise SystemExit("--images: give the folder of request images with --source")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff",
                                                                              ".bmp"))
        if not files:
            raise SystemExit(f"no images in {folder}")
        payloads = [files[i % len(files)].read_bytes() for i in range(args.requests)]
        from ssimae.io.images import read_image

        shape = "x".join(str(n) for n in read_image(files[0]).shape)
        results = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "cpus": os.cpu_count(),
                   "threads": args.threads, "requests": args.requests, "images": len(files), "image_shape": shape,
                   "load_before": load_before,
                   "engines": [bench_engine(sources[e], e, args, payloads, folder, Path(tmp)) for e in engines]}
    results["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
