"""Training levers that were screened in the recipe ablation and lost (issue #10), kept
here so that their rows in docs/results/recipe/ can be reproduced, and out of the package
because they did not win.

    python benchmarks/screening_hooks.py LEVER=VALUE[,LEVER=VALUE] ssimae-train-arguments...

runs ``ssimae train ...`` with the levers patched in (``recipe_ablation.py`` does this for
its variants with hooks). Levers:

- ``ema=DECAY``: the weights used after training are an exponential moving average of the
  trained ones (updated after every optimizer step; the checkpoints of the epochs keep the
  raw weights, the final one the average).
- ``beta1=B``: Adam's first-moment decay (the paper's Adam: 0.9).
- ``gms=W``: adds W x (1 - multi-scale gradient-magnitude similarity), RIAD's MSGMS loss on
  4 scales (each scale's map averaged), to the SSIM-AE's loss.
- ``l1=W``: adds W x mean |reconstruction - input| to the SSIM-AE's loss.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F


def ema(decay: float) -> None:
    import ssimae.training.loop as train

    loop = train._loop

    def _loop(state, loss_fn, opt, *args, **kwargs):
        params = [p for group in opt.param_groups for p in group["params"]]
        shadow = [p.detach().clone() for p in params]
        step = opt.step

        def step_and_average(*a, **k):
            out = step(*a, **k)
            with torch.no_grad():
                torch._foreach_lerp_(shadow, [p.detach() for p in params], 1 - decay)
            return out

        opt.step = step_and_average
        stopped = loop(state, loss_fn, opt, *args, **kwargs)
        with torch.no_grad():
            for p, s in zip(params, shadow):
                p.copy_(s)
        return stopped

    train._loop = _loop


def beta1(b1: float) -> None:
    adam = torch.optim.Adam

    class Adam(adam):
        def __init__(self, params, **kwargs):
            kwargs.setdefault("betas", (b1, 0.999))
            super().__init__(params, **kwargs)

    torch.optim.Adam = Adam


def _gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Prewitt gradient magnitude of (B, C, H, W), as ssimae.core.residual.gradient_magnitude (with
    a 1e-8 under the square root so that its gradient stays finite)."""
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3) / 3
    k = torch.stack([prewitt, prewitt.T])[:, None].to(x).repeat(x.shape[1], 1, 1, 1)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])
    return torch.sqrt(g[:, 0::2] ** 2 + g[:, 1::2] ** 2 + 1e-8)


def msgms_loss(a: torch.Tensor, b: torch.Tensor, scales: int = 4, c: float = 0.0026) -> torch.Tensor:
    total = 0.0
    for level in range(scales):
        if level:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        ga, gb = _gradient_magnitude(a), _gradient_magnitude(b)
        total = total + (1 - (2 * ga * gb + c) / (ga**2 + gb**2 + c)).mean()
    return total / scales


def extra_loss(gms: float = 0.0, l1: float = 0.0) -> None:
    from ssimae.models.ssim_ae import SsimAE
    from ssimae.core.ssim_torch import ssim_loss

    def loss(self, net, params, device):
        opts = params.ssim.kwargs()

        def f(x):
            r = net(x)
            out = ssim_loss(r, x, **opts)
            if gms:
                out = out + gms * msgms_loss(r, x)
            if l1:
                out = out + l1 * (r - x).abs().mean()
            return out

        return f

    SsimAE.loss = loss


def apply(spec: str) -> None:
    levers = dict(item.split("=") for item in spec.split(",") if item)
    if "ema" in levers:
        ema(float(levers["ema"]))
    if "beta1" in levers:
        beta1(float(levers["beta1"]))
    if "gms" in levers or "l1" in levers:
        extra_loss(float(levers.get("gms", 0)), float(levers.get("l1", 0)))


if __name__ == "__main__":
    apply(sys.argv[1])
    from ssimae.cli.main import main

    sys.exit(main(["train", *sys.argv[2:]]))
