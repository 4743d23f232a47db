"""Fusion of two runs' residual maps, each standardised on its validation images.

    python benchmarks/fusion.py RUN_A RUN_B [--out DIR]

Both runs must be trained on the same dataset with the same seed (so they hold back the same
validation images). Each run scores its validation images and the test set with its own
residual and smoothing; each map is standardised by the mean and standard deviation of that
run's validation pixels, z = (map - mean) / std, so that both speak in "standard deviations
above a good part"; the fused map is their mean (and, as a second rule, their maximum). The
table gives pixel ROC AUC, PRO and image ROC AUC (the first run's image score) of A, B and the
two fusions. Two image scales of one model are two runs (``--scale``). Writes DIR/fusion.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def scored(run: Path):
    """(validation maps, test maps, masks, types, detector) of a run, with its own residual and smoothing."""
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.detector import Detector
    from ssimae.inference.test_set import score_test_set, validation_images
    from ssimae.runs.checkpoint import load_run

    loaded = load_run(run)
    data = dict(loaded.settings.train.data)
    dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
    det = Detector.load(loaded)
    val = [det.residual_map(det.settings.preprocess.read(p)) for p in validation_images(dataset, loaded.settings)]
    test = score_test_set(det, dataset, progress=False)
    return val, test.maps[det.default_residual], test.masks, test.types, det


def standardise(val: list[np.ndarray], maps: list[np.ndarray]) -> list[np.ndarray]:
    """Maps as z-scores of the validation images' pooled pixels (float64 statistics)."""
    pooled = np.concatenate([v.ravel().astype(np.float64) for v in val])
    mean, std = pooled.mean(), max(pooled.std(), 1e-12)
    return [((m - mean) / std).astype(np.float32) for m in maps]


def main(argv=None) -> None:
    from ssimae.core.metrics import evaluate_maps

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    val_a, maps_a, masks, types, det_a = scored(Path(args.run_a))
    val_b, maps_b, masks_b, types_b, _ = scored(Path(args.run_b))
    assert types == types_b and all(a.shape == b.shape for a, b in zip(masks, masks_b)), "not the same test set"
    za, zb = standardise(val_a, maps_a), standardise(val_b, maps_b)
    variants = {"A": maps_a, "B": maps_b, "mean of z": [(a + b) / 2 for a, b in zip(za, zb)],
                "max of z": [np.maximum(a, b) for a, b in zip(za, zb)]}
    results = {}
    for name, maps in variants.items():
        m = evaluate_maps(maps, masks, types, det_a.opening_diameter, det_a.settings.image_score)
        results[name] = {"pixel_auc": m["pixel_roc_auc"], "pro": m["pro_auc_fpr30"], "image_auc": m["image_roc_auc"]}
        print(f"{name}: pixel {m['pixel_roc_auc']:.3f} PRO {m['pro_auc_fpr30']:.3f} image {m['image_roc_auc']:.3f}",
              flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fusion.json").write_text(json.dumps({"a": args.run_a, "b": args.run_b,
                                                                "results": results}, indent=1))


if __name__ == "__main__":
    main()
