"""Speed of training and inference, measured side by side in one run (issues #2, #12).

    python benchmarks/bench_speed.py [--steps 20] [--batch-size 32] [--threads N]
                                     [--data ROOT] [--checkpoint RUN] [--engines-only]

Reports
- training patches/s with the l2 loss and the SSIM loss (same network, same batches)
  and their ratio (aim: SSIM at most 1.3x the time of l2);
- inference patches/s of the bare network, and ms per 256x256 image through the whole
  sliding window (stride 30: 36 patches, averaging, SSIM residual map), with the
  window's overhead over the bare network on the same 36 patches (aim: at most 15%).
- training patches/s of each recipe (ssimae.runs.recipes: its batch size, memory format,
  normalisation and loss; the SSIM-AE), next to the bare eager fp32 step (Table 1, SSIM loss,
  batch 32) and the CPU's limit: this machine's fp32 matmul GFLOP/s (a 2048x2048 product,
  the best case for its cores) divided by the FLOPs of one training patch (forward and
  backward, counted by torch.utils.flop_counter);
- the deployment engines (issue #12): ms per 256x256 and per 1024x700 (W x H) image through
  the whole pipeline (sliding window at stride 30, SSIM residual, threshold and opening:
  ``segment``) with the torch detector and with the ONNX export run by onnxruntime
  (``ssimae.runtime``), both with the same number of threads (--threads, default: all
  cores), interleaved, and their ratio; needs onnx and onnxruntime (``pip install
  'ssimae[onnx]'``). ``--engines-only`` measures only this part.
By default the network is freshly initialised and the batch is uniform noise; --data takes
the training batch from random crops of a dataset's training images and --checkpoint starts
from a trained run's weights (step times should not depend on either; this checks it).
Figures are ratios against a baseline measured in the same run; absolute numbers depend
on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import ssimae.core.ssim_torch as ssim_module
from ssimae.runs.checkpoint import load_checkpoint, resolve_checkpoint
from ssimae.data.datasets import load_dataset
from ssimae.inference.detector import Detector
from ssimae.models import get_model
from ssimae.models.network import AutoEncoder
from ssimae.training.patches import RandomPatches
from ssimae.runs.settings import InferenceSettings
from ssimae.core.ssim_torch import ssim_loss
from ssimae.core.window import patch_starts


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15, help="timed steps per measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=None, help="dataset root: train on crops of its training images")
    ap.add_argument("--checkpoint", default=None, help="run folder or checkpoint: start from its weights")
    ap.add_argument("--engines-only", action="store_true", help="measure only torch against onnxruntime")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.engines_only:
        return engine_speeds(args)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = AutoEncoder(100)
    if args.checkpoint:
        state = load_checkpoint(resolve_checkpoint(args.checkpoint))
        run = state["settings"].train
        model = get_model(run.model).build(run.latent_dim, run.params)  # the run's d, so its weights fit
        if type(model) is not AutoEncoder:
            raise SystemExit(f"{args.checkpoint}: a {run.model} run; --checkpoint needs a plain autoencoder "
                             f"(ssim, l2 or fm run)")
        model.load_state_dict(state["model"])
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
    if args.data:
        train_images = load_dataset(args.data, verify=False, log=None).train
        crops = RandomPatches(train_images, args.batch_size, progress=False)
        x = torch.stack([crops[i] for i in range(args.batch_size)]).to(dev)
    else:
        x = torch.rand(args.batch_size, 1, 128, 128, device=dev)
    losses = {"l2": lambda: torch.mean((model(x) - x) ** 2), "ssim": lambda: ssim_loss(model(x), x)}

    def step(name):
        def run():
            loss = losses[name]()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
        return run

    # interleave the two losses so drifts of the machine's speed hit both alike
    t = {"l2": [], "ssim": []}
    for _ in range(3):
        for name in ("l2", "ssim"):
            t[name].append(timed(step(name), max(1, args.steps // 3)))
    train = {k: args.batch_size / statistics.median(v) for k, v in t.items()}

    model.eval()
    img = torch.rand(256, 256)
    n_patches = len(patch_starts(256)) ** 2
    patches = torch.rand(n_patches, 1, 128, 128, device=dev)
    with torch.no_grad():
        bare = timed(lambda: (model(patches), sync()), args.steps)
    det = Detector(model, "ssim", InferenceSettings(), device=dev)
    full = timed(lambda: det.residual_map(img.numpy()), args.steps)

    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"data {args.data or 'uniform noise'}, weights {args.checkpoint or 'fresh'}")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| training, l2 loss | {train['l2']:.1f} patches/s |")
    print(f"| training, SSIM loss | {train['ssim']:.1f} patches/s |")
    print(f"| SSIM step time / l2 step time | {train['l2'] / train['ssim']:.2f}x |")
    print(f"| inference, bare network ({n_patches} patches in one batch) | {n_patches / bare:.1f} patches/s |")
    print(f"| 256x256 image through the sliding window (+ SSIM residual) | {full * 1000:.1f} ms |")
    print(f"| sliding window overhead over the bare network | {100 * (full / bare - 1):+.1f}% |")
    if dev.type == "cpu" and not args.checkpoint:
        recipe_speeds(args, x[:1].cpu())
    if dev.type == "cpu":
        engine_speeds(args)


def engine_speeds(args, sizes=((256, 256), (700, 1024)), rounds: int = 3) -> None:
    """ms per image through the whole pipeline, torch against onnxruntime (see the docstring)."""
    import importlib.util
    import os
    import tempfile

    import numpy as np

    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        print("\nengines: skipped (pip install 'ssimae[onnx]' to measure onnxruntime)")
        return
    from ssimae.runs.checkpoint import save_checkpoint
    from ssimae.inference.export import export_onnx
    from ssimae.runtime import OnnxDetector
    from ssimae.runs.settings import RunSettings, TrainSettings

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = get_model("ssim").build(100, None)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunSettings(TrainSettings(model="ssim"), InferenceSettings(threshold=0.5, residual="ssim"))
        save_checkpoint(f"{tmp}/run/model.pt", settings=run, model=net.state_dict(), finished=True)
        export_onnx(f"{tmp}/run", f"{tmp}/onnx")
        engines = {"torch": Detector.load(f"{tmp}/run", "cpu"), "onnxruntime": OnnxDetector.load(f"{tmp}/onnx", threads)}
        rng = np.random.default_rng(0)
        ms = {}
        for h, w in sizes:
            img = rng.random((h, w)).astype(np.float32)
            times = {name: [] for name in engines}
            for _ in range(rounds):  # interleaved, so drifts of the machine's speed hit both alike
                for name, det in engines.items():
                    times[name].append(timed(lambda: det.segment(img), 1))
            ms[(h, w)] = {name: 1000 * statistics.median(v) for name, v in times.items()}
    import onnxruntime

    print()
    print(f"engines: torch {torch.__version__} and onnxruntime {onnxruntime.__version__}, {threads} threads each, "
          f"SSIM-AE d = 100, whole pipeline (window, SSIM residual, threshold, opening), median of {rounds}")
    print("| image (W x H) | patches | torch | onnxruntime | torch time / onnxruntime time |")
    print("|---|---|---|---|---|")
    for (h, w), row in ms.items():
        n = len(patch_starts(h)) * len(patch_starts(w))
        print(f"| {w}x{h} | {n} | {row['torch']:.0f} ms | {row['onnxruntime']:.0f} ms | "
              f"{row['torch'] / row['onnxruntime']:.2f}x |")


def recipe_speeds(args, sample: torch.Tensor) -> None:
    """Training patches/s of each recipe, the bare step, and the CPU's limit (see the docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ssimae.runs.recipes import RECIPES, recipe_settings
    from ssimae.runs.settings import TrainSettings
    from ssimae.training.loop import measure_throughput

    a = torch.rand(2048, 2048)
    gflops_peak = 2 * 2048**3 / timed(lambda: a @ a, 5) / 1e9
    net = AutoEncoder(100)
    x = sample.expand(4, -1, -1, -1).contiguous()
    # the FLOPs of the math, not of its implementation: the SSIM filter counted as the 11-tap
    # convolution (its banded-matrix form on a CPU multiplies many zeros)
    band, ssim_module.BAND_MAX_SIDE = ssim_module.BAND_MAX_SIDE, 0
    try:
        with FlopCounterMode(display=False) as counter:
            ssim_loss(net(x), x).backward()
    finally:
        ssim_module.BAND_MAX_SIDE = band
    gflop_patch = counter.get_total_flops() / 4 / 1e9
    patches = RandomPatches([sample[0, 0].numpy()], 64, progress=False)
    rows = [("bare eager fp32 step (paper settings, batch 32)", TrainSettings(batch_size=32))]
    for name in RECIPES:
        train_opts, _ = recipe_settings(name)
        rows.append((f"recipe {name} ({', '.join(f'{k}={v}' for k, v in train_opts.items() if k != 'recipe') or 'batch 32'})",
                     TrainSettings(**train_opts)))
    print()
    print(f"CPU limit: {gflops_peak:.0f} GFLOP/s (fp32 matmul) / {gflop_patch:.2f} GFLOP per training patch "
          f"= {gflops_peak / gflop_patch:.0f} patches/s")
    print("| training step | patches/s | share of the CPU limit |")
    print("|---|---|---|")
    rates = []
    for _ in range(2):  # two interleaved rounds, best of each
        rates.append([measure_throughput(get_model("ssim"), t, patches, torch.device("cpu"), steps=args.steps)
                      for _, t in rows])
    for (label, _), rate in zip(rows, map(max, zip(*rates))):
        print(f"| {label} | {rate:.1f} | {rate / (gflops_peak / gflop_patch):.0%} |")


if __name__ == "__main__":
    main()
