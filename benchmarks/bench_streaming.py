"""Benchmark: streaming training patches from a dataset larger than the in-memory cache.

Generates N gray PNG textures of SIZE x SIZE (default 2000 of 1024x1024, about 0.9 MB each;
fast PNG compression, two processes), then reads patches through ``RandomPatches`` with a
DataLoader (``make_loader``), each configuration in a fresh Python process so its peak
memory is its own:

* streaming (``cache_bytes=0``) with 0 and 2 workers, one patch per decoded image
  (``patches_per_image=1``: the worst case) and the streaming default (8 per image);
* the in-memory baseline on as many images as fit in the default 2 GiB cache.

Reports images decoded per second, patches per second, and peak resident memory (ru_maxrss)
of the main process and of the largest worker (RUSAGE_CHILDREN gives the largest child, not
the sum: total <= main + workers x worker peak).

    .venv/bin/python benchmarks/bench_streaming.py            # ~3-5 min on 2 cores
    .venv/bin/python benchmarks/bench_streaming.py --n 300     # quick
    .venv/bin/python benchmarks/bench_streaming.py --dir /tmp/tex   # keep/reuse the images
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _texture_base(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture field (2*size)^2 in [0, 1], shared by all generated images."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((2 * size, 2 * size)), 2.0, mode="wrap")
    base += 0.5 * gaussian_filter(rng.random((2 * size, 2 * size)), 12.0, mode="wrap")
    return (base - base.min()) / (base.max() - base.min())


_BASE: np.ndarray | None = None


def _make_one(args: tuple[str, int, int]) -> int:
    """Write image i: a random window of the base texture plus fine noise; returns bytes written."""
    from PIL import Image

    path, i, size = args
    rng = np.random.default_rng(1000 + i)
    y, x = rng.integers(0, size, 2)
    img = _BASE[y:y + size, x:x + size] * 200 + rng.integers(0, 40, (size, size))
    Image.fromarray(img.astype(np.uint8)).save(path, compress_level=1)
    return Path(path).stat().st_size


def _init(size: int) -> None:
    global _BASE
    _BASE = _texture_base(size)


def generate(folder: Path, n: int, size: int) -> tuple[list[Path], float, float]:
    """Create (or reuse) n PNGs in folder -> (paths, seconds, mean MB per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.png" for i in range(n)]
    todo = [(str(p), i, size) for i, p in enumerate(paths) if not p.exists()]
    t0 = time.perf_counter()
    if todo:
        with mp.get_context("fork").Pool(2, initializer=_init, initargs=(size,)) as pool:
            for k, _ in enumerate(pool.imap_unordered(_make_one, todo, chunksize=8)):
                if (k + 1) % 250 == 0:
                    print(f"  generated {k + 1}/{len(todo)}", file=sys.stderr, flush=True)
    secs = time.perf_counter() - t0
    mb = sum(p.stat().st_size for p in paths) / n / 2**20
    return paths, secs, mb


def measure(listing: str, n_images: int, workers: int, per_image: int, patches: int, batch: int, lazy: bool) -> dict:
    """Run in a fresh process: read ``patches`` patches, return rates and peak memory."""
    import torch

    from ssimae.training.patches import RandomPatches, make_loader

    paths = [Path(p) for p in Path(listing).read_text().split("\n")[:n_images]]
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reads = mp.get_context("fork").Value("q", 0)

    class Counting(RandomPatches):
        def image(self, k):
            before = self.reads
            out = super().image(k)
            if self.reads != before and not self.in_memory:
                with reads.get_lock():
                    reads.value += self.reads - before
            return out

    t0 = time.perf_counter()
    ds = Counting(paths, patches_per_epoch=patches, cache_bytes=0 if lazy else 2 * 2**30,
                  patches_per_image=per_image, progress=False)
    setup = time.perf_counter() - t0
    if ds.in_memory:
        reads.value = ds.reads
    loader = make_loader(ds, batch_size=batch, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    for x in loader:
        n += x.shape[0]
        assert x.dtype == torch.float32
    secs = time.perf_counter() - t0
    del loader  # shuts the persistent workers down, so RUSAGE_CHILDREN covers them
    return {"mode": "stream" if lazy else "memory", "workers": workers, "per_image": per_image, "images": n_images,
            "patches": n, "setup_s": round(setup, 2), "read_s": round(secs, 2), "decoded": reads.value,
            "patches_per_s": round(n / secs, 1),
            "images_per_s": round((reads.value if lazy else n_images) / (secs if lazy else setup), 1),
            "rss_start_mb": round(rss_start), "rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024) if workers else 0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    ap.add_argument("--dir", type=Path, help="folder for the images (kept and reused); default: a temp dir")
    ap.add_argument("--patches", type=int, default=1500, help="patches read per configuration")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:  # child process
        print(json.dumps(measure(**json.loads(args.measure))))
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="ssimae-bench-"))
    try:
        paths, gen_s, mb = generate(folder, args.n, args.size)
        print(f"images: {args.n} x {args.size}x{args.size} gray PNG, {mb:.2f} MB each, "
              f"generated in {gen_s:.0f} s, in {folder}")
        listing = folder / "listing.txt"
        listing.write_text("\n".join(str(p) for p in paths))
        fit = min(args.n, (2 * 2**30) // (args.size * args.size * 4))
        configs = [dict(n_images=args.n, workers=w, per_image=k, lazy=True) for k in (1, 8) for w in (0, 2)]
        configs += [dict(n_images=fit, workers=w, per_image=1, lazy=False) for w in (0, 2)]
        print(f"{'mode':7} {'images':>6} {'workers':>7} {'per_img':>7} {'patches':>7} {'decoded':>7} "
              f"{'img/s':>7} {'patch/s':>8} {'setup_s':>7} {'rss_main':>8} {'rss_wrk':>7} {'rss_idle':>8}")
        for cfg in configs:
            cfg.update(listing=str(listing), patches=args.patches, batch=args.batch)
            out = subprocess.run([sys.executable, __file__, "--measure", json.dumps(cfg)], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{r['mode']:7} {r['images']:>6} {r['workers']:>7} {r['per_image']:>7} {r['patches']:>7} "
                  f"{r['decoded']:>7} {r['images_per_s']:>7} {r['patches_per_s']:>8} {r['setup_s']:>7} "
                  f"{r['rss_main_mb']:>6}MB {r['rss_worker_mb']:>5}MB {r['rss_start_mb']:>6}MB", flush=True)
        print("img/s: images decoded per second while reading patches (memory: while preloading, in setup_s);"
              " rss: peak resident memory of the main process / largest worker;"
              " rss_idle: the main process after importing torch, before loading")
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
