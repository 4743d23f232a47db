"""The built-in demo: the whole job on synthetic data that needs no download.

1. Build the demo dataset (real scikit-image texture + synthetic cuts, roughened areas and
   contaminations with pixel-exact masks; :mod:`ssimae.demo_data`), MVTec layout.
2. Train the SSIM-AE and the l2-AE on it with a CPU budget.
3. Evaluate both with the paper's protocol; write one metrics.json per model, both ROC
   curves in one plot, a table, and for the first test image of each folder the predicted
   mask at the stored threshold (overlay) beside its residual heat map (overlays/).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from ssimae.demo_data import make_demo_data
from ssimae.detector import Detector
from ssimae.images import read_image
from ssimae.morphology import segment
from ssimae.plots import heatmap_rgb, overlay_rgb
from ssimae.train import TrainConfig

# A CPU budget that keeps the whole demo under 10 minutes on 2 cores (measured; README).
DEMO_TRAINING = dict(epochs=10, patches_per_epoch=1600, batch_size=16, latent_dim=100, val_fraction=0.1)
DEMO_MINUTES_PER_MODEL = 4.0  # safety net on slow machines; the patch budget normally ends first


def demo_configs(seed: int = 0, minutes_per_model: float | None = None) -> list[TrainConfig]:
    minutes = DEMO_MINUTES_PER_MODEL if minutes_per_model is None else minutes_per_model
    return [TrainConfig(model=m, seed=seed, max_minutes=minutes, **DEMO_TRAINING) for m in ("ssim", "l2")]


def run_demo(out: str | Path = "demo-out", *, seed: int = 0, minutes_per_model: float | None = None,
             progress: bool = True, log=print) -> list[dict]:
    from ssimae.compare import compare

    out = Path(out)
    t0 = time.monotonic()
    data = out / "data"
    if not (data / "train").is_dir():
        make_demo_data(data, seed=seed)
        log(f"demo dataset written to {data}")
    rows = compare(demo_configs(seed, minutes_per_model), data, out, progress=progress, log=log)
    for model in ("ssim", "l2"):
        det = Detector.load(out / "runs" / model)
        (out / "overlays").mkdir(parents=True, exist_ok=True)
        for sample in _overlay_samples(data):
            img = read_image(sample)
            res = det.residual_map(img)
            mask = segment(res, det.threshold, det.opening_diameter)
            # the predicted mask at the stored threshold, next to the residual heat map
            panel = np.hstack([overlay_rgb(img, mask), heatmap_rgb(res, 0, 2 * det.threshold)])
            Image.fromarray(panel).save(out / "overlays" / f"{model}_{sample.parent.name}_{sample.stem}.png")
    minutes = (time.monotonic() - t0) / 60
    log(f"demo finished in {minutes:.1f} minutes; report in {out} (results.md, roc.png, examples.png, overlays/)")
    return rows


def _overlay_samples(data: Path) -> list[Path]:
    """The first test image of each folder under test/ (a few per demo)."""
    return [sorted(d.glob("*.png"))[0] for d in sorted((data / "test").iterdir()) if d.is_dir() and any(d.glob("*.png"))]
