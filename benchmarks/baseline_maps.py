"""Model-free maps on the dev sets: what a metric gives a map that knows nothing of defects.

    python benchmarks/baseline_maps.py --shared ../shared --out docs/results/suite/baseline-maps.json

Each dev set of :mod:`suite` (its test set at the suite's scale; the demo made by
``ssimae make-demo-data`` under ``--work``) is scored with maps computed from the test image
alone, no training: ``brightness`` (the gray image smoothed with a Gaussian of sigma 4 px),
``darkness`` (its negative) and ``local-contrast`` (the local standard deviation in a 9 x 9
window, smoothed the same way). Printed and written: pixel ROC AUC, PRO (to FPR 0.3), image
ROC AUC (largest opened value) and the pixel ROC AUC of the local defects
(:func:`suite.local_defects`). A model's pixel AUC on a set means something only above these.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from suite import SETS, demo_data, local_defects

SIGMA = 4.0


def brightness(img: np.ndarray) -> np.ndarray:
    """(H, W) gray in [0, 1] -> its Gaussian smoothing (sigma :data:`SIGMA`), float32."""
    return ndi.gaussian_filter(img.astype(np.float32), SIGMA)


def darkness(img: np.ndarray) -> np.ndarray:
    return -brightness(img)


def local_contrast(img: np.ndarray, size: int = 9) -> np.ndarray:
    """Local standard deviation in a ``size`` x ``size`` window, then smoothed (sigma :data:`SIGMA`)."""
    x = img.astype(np.float64)
    mean = ndi.uniform_filter(x, size)
    var = np.maximum(ndi.uniform_filter(x * x, size) - mean * mean, 0.0)
    return ndi.gaussian_filter(np.sqrt(var), SIGMA).astype(np.float32)


MAPS = {"brightness": brightness, "darkness": darkness, "local-contrast": local_contrast}


def score_set(root: Path, scale: float) -> dict:
    """{map name: metrics} of one dataset's test set read gray at ``scale`` (maps computed at
    that scale, resized back to each image's resolution like a model's)."""
    from ssimae.core.metrics import evaluate_maps
    from ssimae.core.preprocess import Preprocess
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.scorer import resize_map
    from ssimae.io.images import read_mask

    dataset = load_dataset(root, log=None, progress=False)
    pre = Preprocess(scale=scale)
    maps = {k: [] for k in MAPS}
    masks, types = [], []
    for s in dataset.test:
        img = pre.read(s.image)
        small = pre.apply(img)
        for k, f in MAPS.items():
            maps[k].append(resize_map(f(small), img.shape[:2]) if small.shape != img.shape else f(small))
        masks.append(np.zeros(img.shape[:2], bool) if s.mask is None else read_mask(s.mask, img.shape[:2]))
        types.append(s.defect_type)
    local = local_defects(masks)
    out = {}
    for k, ms in maps.items():
        m = evaluate_maps(ms, masks, types)
        loc = evaluate_maps([ms[i] for i in local], [masks[i] for i in local], [types[i] for i in local])
        out[k] = {"pixel_auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"], "image_auc": m["image_roc_auc"],
                  "pixel_auc_local": loc["pixel_roc_auc"]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="../shared", help="the folder holding datasets/")
    ap.add_argument("--work", type=Path, default=Path("baseline-maps"), help="where the demo data is made")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the results")
    a = ap.parse_args(argv)
    results = {}
    for name, (folder, extra, _, _) in SETS.items():
        scale = float(extra[extra.index("--scale") + 1]) if "--scale" in extra else 1.0
        a.work.mkdir(parents=True, exist_ok=True)
        root = demo_data(a.work) if folder is None else Path(a.shared) / "datasets" / folder
        results[name] = score_set(root, scale)
        for k, m in results[name].items():
            print(f"{name:14s} {k:15s} pixel {m['pixel_auc']:.3f}  PRO {m['pro']:.3f}  image {m['image_auc']:.3f}"
                  f"  pixel (local defects) {m['pixel_auc_local']:.3f}", flush=True)
    if a.out:
        from ssimae.io.files import atomic_write_text
        from ssimae.io.folders import RunLock

        a.out.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(a.out.parent, "benchmarks/baseline_maps.py"):
            atomic_write_text(a.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
