"""Speed of training and inference, measured side by side in one run (issue #2).

    python benchmarks/bench_speed.py [--steps 20] [--batch-size 32] [--threads N]
                                     [--data ROOT] [--checkpoint RUN]

Reports
- training patches/s with the l2 loss and the SSIM loss (same network, same batches)
  and their ratio (aim: SSIM at most 1.3x the time of l2);
- inference patches/s of the bare network, and ms per 256x256 image through the whole
  sliding window (stride 30: 36 patches, averaging, SSIM residual map), with the
  window's overhead over the bare network on the same 36 patches (aim: at most 15%).
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

from ssimae.checkpoint import load_checkpoint, resolve_checkpoint
from ssimae.datasets import load_dataset
from ssimae.detector import Detector
from ssimae.models import get_model
from ssimae.network import AutoEncoder
from ssimae.patches import RandomPatches
from ssimae.settings import InferenceSettings
from ssimae.ssim import ssim_loss
from ssimae.window import patch_starts


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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
