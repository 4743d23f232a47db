"""Where the selection proxy pastes its anomalies: uniformly (``ssimae.inference.selection``,
the default) or centred on the image's salient pixels (those far from the image border's
typical brightness: the object of an object image), measured against the truth over the
runs of dev-suite folders.

    python benchmarks/proxy_variants.py SUITE_DIR [SUITE_DIR ...] --out docs/results/suite/proxy-variants.json

For every run under SUITE_DIR/runs/<config>/<set>/seed<k> that SUITE_DIR/results.json scored,
the proxy (:func:`ssimae.inference.selection.proxy_scores`, the run's own validation images)
with each placement: "uniform" (the anomaly's centre uniform over the image), "salient50"
(half the anomalies moved so their centre is a pixel drawn with probability proportional to
its squared salience) and "salient100" (all of them). Prints each run's proxies beside its
true pixel and image ROC AUC, then per set the Spearman rank correlation of each proxy
(and of its pixel and image parts) with the true AUCs, and the run each would pick.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr


def salience(image: np.ndarray) -> np.ndarray:
    """(H, W) >= 0: |Gaussian-smoothed (sigma 3) brightness - the median of the image's border
    ring (5 % of the shorter side)| over that ring's median absolute deviation."""
    g = image if image.ndim == 2 else image.mean(-1)
    s = ndi.gaussian_filter(g.astype(np.float64), 3)
    b = max(2, int(0.05 * min(s.shape)))
    ring = np.concatenate([s[:b].ravel(), s[-b:].ravel(), s[:, :b].ravel(), s[:, -b:].ravel()])
    med = np.median(ring)
    return np.abs(s - med) / (np.median(np.abs(ring - med)) + 1e-3)


def salient(fn, share: float):
    """``fn`` (image, rng) -> (anomalous image, mask) with a share of its anomalies moved so
    their mask's centroid lies on a pixel drawn by squared salience (pixels moved off the
    image are dropped)."""
    def wrapped(image, rng):
        if rng.random() >= share:
            return fn(image, rng)
        p = salience(image).ravel() ** 2 + 1e-9
        cy, cx = divmod(int(rng.choice(p.size, p=p / p.sum())), image.shape[1])
        out, mask = fn(image, rng)
        ys, xs = np.nonzero(mask)
        ys2, xs2 = ys + int(cy - ys.mean()), xs + int(cx - xs.mean())
        ok = (ys2 >= 0) & (ys2 < mask.shape[0]) & (xs2 >= 0) & (xs2 < mask.shape[1])
        if not ok.any():
            return out, mask
        moved, moved_mask = image.copy(), np.zeros_like(mask)
        moved[ys2[ok], xs2[ok]] = out[ys[ok], xs[ok]]
        moved_mask[ys2[ok], xs2[ok]] = True
        return moved, moved_mask
    return wrapped


def main(argv=None) -> None:
    import ssimae.inference.selection as selection
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.detector import Detector
    from ssimae.inference.test_set import validation_images
    from ssimae.runs.checkpoint import load_run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    uniform = selection.proxy_anomaly
    variants = {"uniform": uniform, "salient50": salient(uniform, 0.5), "salient100": salient(uniform, 1.0)}
    truth, runs = {}, {}
    for suite in args.suites:
        for key, r in json.loads((suite / "results.json").read_text()).items():
            truth[key] = r["metrics"]
            runs[key] = suite / "runs" / key
    out = {}
    for key in sorted(runs):
        t0 = time.time()
        loaded = load_run(runs[key])
        data = dict(loaded.settings.train.data)
        dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
        det = Detector.load(loaded)
        val = validation_images(dataset, loaded.settings)
        out[key] = {}
        for name, fn in variants.items():
            selection.proxy_anomaly = fn
            out[key][name] = selection.proxy_scores(det, val)
        selection.proxy_anomaly = uniform
        print(key, f"pixel {truth[key]['pixel_auc']:.3f} image {truth[key]['image_auc']:.3f}",
              {n: round(v["proxy"], 3) for n, v in out[key].items()}, f"{time.time() - t0:.0f} s", flush=True)
    args.out.write_text(json.dumps(out, indent=1))
    for s in sorted({k.split("/")[1] for k in out}):
        keys = [k for k in out if k.split("/")[1] == s]
        if len(keys) < 2:
            continue
        for name in variants:
            for part in ("proxy", "pixel_auc", "image_auc"):
                p = [out[k][name][part] for k in keys]
                rho = [spearmanr(p, [truth[k][m] for k in keys])[0] for m in ("pixel_auc", "image_auc")]
                print(f"{s} {name} {part}: Spearman ~ pixel {rho[0]:.2f}, ~ image {rho[1]:.2f}; "
                      f"pick {keys[int(np.argmax(p))].split('/')[0]}")


if __name__ == "__main__":
    main()
