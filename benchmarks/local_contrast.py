"""Why a reconstruction residual misses Magnetic Tile's fray: defect pixels by local contrast.

    python benchmarks/local_contrast.py --data ../shared/datasets/magnetic-tile

For every defective image, the local standard deviation of the input (11 x 11 box, the SSIM
window's size) at each pixel; prints, per defect type, the median local contrast of defect
and of defect-free pixels and the pixel ROC AUC of *low* contrast as a detector
(sklearn.metrics.roc_auc_score of -std). A residual that grows with the local contrast of the
input (as an autoencoder's does, since smooth areas are easy to reconstruct) ranks a type
whose defects are smoother than the good surface below chance.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from sklearn.metrics import roc_auc_score


def local_std(image: np.ndarray, size: int = 11) -> np.ndarray:
    """Standard deviation of each size x size box (reflect padding), same shape as ``image``."""
    mean = ndi.uniform_filter(image, size)
    return np.sqrt(np.maximum(ndi.uniform_filter(image * image, size) - mean * mean, 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    print("| type | images | defect pixels | median local std, defect / good | AUC of low contrast |")
    print("|---|---|---|---|---|")
    for folder in sorted(Path(args.data).glob("MT_*")):
        if folder.name == "MT_Free":
            continue
        labels, stds = [], []
        images = sorted(folder.rglob("*.jpg"))
        for path in images:
            image = np.asarray(Image.open(path).convert("L"), np.float64) / 255
            labels.append((np.asarray(Image.open(path.with_suffix(".png")).convert("L")) > 127).ravel())
            stds.append(local_std(image).ravel())
        y, s = np.concatenate(labels), np.concatenate(stds)
        print(f"| {folder.name[3:]} | {len(images)} | {int(y.sum())} | {np.median(s[y]):.3f} / {np.median(s[~y]):.3f} "
              f"| {roc_auc_score(y, -s):.3f} |")


if __name__ == "__main__":
    main()
