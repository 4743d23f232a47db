"""Two CPU kernels of the training step, each against the plain torch operation it
replaces, side by side in one run:

- the SSIM's separable Gaussian filter on a batch of 128x128 patches: banded matrix
  products (``ssimae.core.ssim_torch._filter`` for sides <= BAND_MAX_SIDE) against the grouped
  convolution (what it uses for larger images);
- Table 1's conv9 (8x8 kernel on an 8x8 map -> 1x1) and its transpose in the decoder as
  matrix products (``LatentConv2d``, ``LatentConvTranspose2d``) against nn.Conv2d /
  nn.ConvTranspose2d;
- the whole training step of the ``fast`` recipe (SSIM-AE, d = 500, batch 16, channels
  last) and of the l2-AE with both kernels against both plain operations, interleaved.

    python benchmarks/bench_kernels.py [--repeats 20] [--rounds 3] [--threads N]

Times are medians of forward + backward; the figures to quote are the ratios.
"""
from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager

import torch
from torch import nn

import ssimae.core.ssim_torch as S
from bench_speed import timed  # benchmarks/ is on sys.path when run as a script
from ssimae.models.network import AutoEncoder, LatentConv2d, LatentConvTranspose2d


@contextmanager
def plain_kernels():
    """The grouped convolution for the SSIM filter and nn.Conv2d / nn.ConvTranspose2d for conv9."""
    saved = S.BAND_MAX_SIDE, LatentConv2d.forward, LatentConvTranspose2d.forward
    S.BAND_MAX_SIDE, LatentConv2d.forward, LatentConvTranspose2d.forward = 0, nn.Conv2d.forward, \
        nn.ConvTranspose2d.forward
    try:
        yield
    finally:
        S.BAND_MAX_SIDE, LatentConv2d.forward, LatentConvTranspose2d.forward = saved


def median_ms(fn, repeats: int) -> float:
    return timed(fn, repeats) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (new, plain)")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    batch = 16
    x = torch.rand(batch, 1, 128, 128).contiguous(memory_format=cl)
    y = torch.rand(batch, 1, 128, 128, requires_grad=True)
    w = S.window_1d()
    stack = torch.rand(batch, 5, 128, 128, requires_grad=True)

    def filt():
        S._filter(stack, w).sum().backward()

    def loss():
        S.ssim_loss(y, x).backward()

    net = AutoEncoder(500).to(memory_format=cl)
    enc9, dec9 = net.encoder[-1], net.decoder[0]
    h = torch.randn(batch, 32, 8, 8).contiguous(memory_format=cl).requires_grad_(True)
    z = torch.randn(batch, 500, 1, 1).requires_grad_(True)

    def latent():
        enc9(h).sum().backward()
        dec9(z).sum().backward()

    opt = torch.optim.Adam(net.parameters(), lr=2e-4, weight_decay=1e-5)

    def step(loss_fn):
        def run():
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), x).backward()
            opt.step()
        return run

    parts = {"SSIM filter (5 moment maps)": filt, "SSIM loss": loss, "conv9 + its transpose": latent,
             "training step, SSIM loss": step(S.ssim_loss),
             "training step, l2 loss": step(lambda r, t: ((r - t) ** 2).mean())}
    results = {name: ([], []) for name in parts}
    for _ in range(args.rounds):
        for name, fn in parts.items():
            results[name][0].append(median_ms(fn, args.repeats))
            with plain_kernels():
                results[name][1].append(median_ms(fn, args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch} of 128x128, "
          f"{args.rounds} interleaved rounds of {args.repeats} repeats (medians, ms, forward + backward)")
    print(f"{'part':32s} {'ssimae':>9s} {'plain torch':>12s} {'speed-up':>9s}")
    for name, (new, plain) in results.items():
        a, b = statistics.median(new), statistics.median(plain)
        extra = f"   ({batch / a * 1000:.0f} vs {batch / b * 1000:.0f} patches/s)" if "step" in name else ""
        print(f"{name:32s} {a:9.2f} {b:12.2f} {b / a:8.2f}x{extra}")


if __name__ == "__main__":
    main()
