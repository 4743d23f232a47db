"""Fusion of trained runs (beyond the paper): each run's own residual map, standardised by its
mean and standard deviation over defect-free calibration images, summed, then thresholded and
opened as any map.

Two models fail differently: on the dev suite DRAEM's segmentation head ranks whole images
best and marks the whole-shape defects of visa-fryum poorly, the inpainting U-Net gives the
better masks; fused, they beat both on the suite's mean and worst set
(docs/results/suite/README.md, "Fusion").

A fused run is a folder: ``fusion.json`` (the statistics, both thresholds, where the members
came from) and ``members/0``, ``members/1``, ... (each a complete run, or a complete export, copied
in: the folder moves as one). :class:`FusedDetector` scores with it on either engine and is a
:class:`ssimae.inference.scorer.Scorer`, so ``predict``, ``evaluate``, ``serve`` and the
Python API treat it as any run. ``ssimae fuse`` writes one (:func:`calibrate_fusion`, :func:`write_fused`), ``ssimae
export`` exports its members (:func:`export_fused`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ssimae.core.morphology import gray_opening
from ssimae.core.thresholds import image_threshold, threshold_from_maps
from ssimae.core.verdict import image_scores
from ssimae.errors import SsimaeError
from ssimae.inference.calibration import pooled_stats
from ssimae.inference.scorer import Scorer
from ssimae.io.files import atomic_write_text, json_safe
from ssimae.io.progress import progress as progress_display

FUSION_FILE = "fusion.json"
MEMBERS_DIR = "members"
RESIDUAL = "fusion"
IMAGE_SCORE = "max"  # of the opened fused map (measured so); the members' own image scores do not apply
MAX_FUSION_BYTES = 1 << 20
MEMBER_FILES = ("model.pt", "config.json", "model.onnx", "ssimae.json")  # what a run or an export needs


def is_fusion(path: str | os.PathLike) -> bool:
    """True for a folder written by ``ssimae fuse`` (or its export): ``fusion.json`` inside."""
    return (Path(path) / FUSION_FILE).is_file()


def fuse_maps(maps: Sequence[np.ndarray], stats: Sequence[Sequence[float]]) -> np.ndarray:
    """sum_k (maps[k] - mean_k) / std_k: the fused map of one image from its members' maps
    ((H, W) each, one shape) and their [mean, std] on defect-free images; (H, W) float32.
    A member whose maps do not vary (std 0) is divided by 1e-12 as :func:`ssimae.core.residual.standardised` does."""
    if len(maps) != len(stats) or not maps:
        raise ValueError(f"{len(maps)} maps but {len(stats)} statistics")
    out = np.zeros(np.shape(maps[0]), np.float64)
    for m, (mean, std) in zip(maps, stats):
        if np.shape(m) != out.shape:
            raise ValueError(f"member maps differ in shape: {np.shape(m)} and {out.shape}")
        out += (np.asarray(m, np.float64) - mean) / max(float(std), 1e-12)
    return out.astype(np.float32)


class FusedDetector(Scorer):
    """Scores an image with every member (their own residual, smoothing and tiling) and fuses
    the maps (:func:`fuse_maps`); the reconstruction shown is the first member's. ``settings``:
    the first member's, with the fused run's thresholds and image score."""

    def __init__(self, members: Sequence[Scorer], stats: Sequence[Sequence[float]], settings=None):
        if len(members) < 2 or len(stats) != len(members):
            raise SsimaeError(f"a fusion needs two or more members, each with its statistics "
                              f"(got {len(members)} members, {len(stats)} statistics)")
        self.members = list(members)
        self.stats = [[float(a), float(b)] for a, b in stats]
        self.settings = settings if settings is not None else dataclasses.replace(
            members[0].settings, threshold=None, image_threshold=None, image_score=IMAGE_SCORE)

    fused_on: int | None = None  # how many defect-free images the thresholds were set on
    engine = property(lambda self: self.members[0].engine)
    outputs = (RESIDUAL,)
    default_residual = RESIDUAL
    model_name = property(lambda self: RESIDUAL)

    @property
    def title(self) -> str:
        return "fusion of " + " + ".join(m.title for m in self.members)

    MEMBER_SETTINGS = ("smooth", "tiling", "tile_size", "residual", "model_params", "stride", "residual_stats")

    def with_settings(self, **changes) -> "FusedDetector":
        """A copy with ``changes`` to the fused settings (thresholds, opening, image rule); the
        settings each member scores with (smoothing, tiling, residual, ...) are refused: they
        are the members' own, and the fused statistics rest on them."""
        theirs = sorted(set(changes) & set(self.MEMBER_SETTINGS))
        if theirs:
            raise SsimaeError(f"a fused run scores with its members' own {', '.join(theirs)}: change a member and "
                              "fuse again")
        return super().with_settings(**changes)

    def analyze_batch(self, images, residuals=(RESIDUAL,)) -> list[tuple[np.ndarray, dict]]:
        """(first member's reconstruction, {"fusion": (H, W) map}) of each image."""
        other = [r for r in residuals if r != RESIDUAL]
        if other:
            raise SsimaeError(f"a fused run gives only the {RESIDUAL} residual, not {', '.join(other)}")
        per = [m.analyze_batch(images, (m.default_residual,)) for m in self.members]
        return [(per[0][i][0], {RESIDUAL: fuse_maps([p[i][1][m.default_residual] for p, m in zip(per, self.members)],
                                                     self.stats)})
                for i in range(len(images))]

    @classmethod
    def load(cls, path: str | os.PathLike, engine: str = "auto", device: str | None = None,
             threads: int | None = None) -> "FusedDetector":
        """The fused run (or its export) at ``path``; members on ``engine`` (auto: each by its folder)."""
        from ssimae.inference.engines import load_detector

        path = Path(path)
        info = read_fusion(path)
        members = [load_detector(path / rel, engine, device, threads) for rel in info["members"]]
        fused = cls(members, info["stats"])
        fused.fused_on = info["image_threshold_images"]
        fused.settings = dataclasses.replace(fused.settings, threshold=info["threshold"],
                                             image_threshold=info["image_threshold"],
                                             image_threshold_images=info["image_threshold_images"])
        return fused


def read_fusion(path: Path) -> dict:
    """fusion.json of ``path``, checked (SsimaeError naming the file and the problem)."""
    f = path / FUSION_FILE
    try:
        if f.stat().st_size > MAX_FUSION_BYTES:
            raise SsimaeError(f"larger than {MAX_FUSION_BYTES} bytes", f)
        info = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise SsimaeError(f"cannot read the fusion file ({type(e).__name__})", f) from None
    try:
        members, stats = [str(m) for m in info["members"]], [[float(a), float(b)] for a, b in info["stats"]]
        threshold = None if info["threshold"] is None else float(info["threshold"])
        image_t = None if info["image_threshold"] is None else float(info["image_threshold"])
        n = int(info.get("image_threshold_images") or 0) or None
    except (KeyError, TypeError, ValueError):
        raise SsimaeError("not a fusion file: needs members, stats, threshold and image_threshold", f) from None
    for m in members:
        if Path(m).is_absolute() or ".." in Path(m).parts:
            raise SsimaeError(f"member {m!r} is not a folder inside the fused run", f)
    if len(members) != len(stats) or len(members) < 2:
        raise SsimaeError("a fusion needs two or more members, each with its statistics", f)
    return {**info, "members": members, "stats": stats, "threshold": threshold, "image_threshold": image_t,
            "image_threshold_images": n}


def calibrate_fusion(members: Sequence[Scorer], images: Sequence[str | os.PathLike], progress: bool = True):
    """(FusedDetector with statistics and both thresholds, number of images) from defect-free
    ``images``: each member's own map of each image, its [mean, std] (:func:`ssimae.inference.calibration.pooled_stats`), the
    fused maps, the pixel threshold of the first member's rule (:func:`threshold_from_maps`)
    and the image threshold of its image rule on the max of the opened fused maps."""
    if not images:
        raise SsimaeError("a fusion is calibrated on defect-free images and none were found; give --images DIR")
    preprocess = members[0].settings.preprocess
    for m in members[1:]:
        if m.settings.preprocess != preprocess:
            raise SsimaeError("the runs read images differently (colour, size or scale): they cannot be fused "
                              f"({m.settings.preprocess} vs {preprocess})")
    maps: list[list[np.ndarray]] = [[] for _ in members]
    for p in progress_display(images, desc="calibrating the fusion", enabled=progress):
        image = members[0].read(p)
        for k, m in enumerate(members):
            maps[k].append(m.residual_map(image))
    stats = [pooled_stats(ms) for ms in maps]
    fused = FusedDetector(members, stats)
    s = fused.settings
    fused_maps = [fuse_maps(list(ms), stats) for ms in zip(*maps)]
    scores = image_scores([gray_opening(m, s.opening_diameter) for m in fused_maps], s.image_score)
    fused.settings = dataclasses.replace(
        s, threshold=threshold_from_maps(fused_maps, s),
        image_threshold=image_threshold(scores, s.image_fpr, s.image_threshold_rule),
        image_threshold_images=len(scores))
    return fused, len(images)


def copy_member(source: Path, target: Path) -> None:
    """The files a run (model.pt, config.json) or an export (model.onnx, ssimae.json) needs,
    copied from ``source`` into a new folder ``target`` (written beside it, then renamed)."""
    files = [source / f for f in MEMBER_FILES if (source / f).is_file()]
    if not files:
        raise SsimaeError("not a run folder or an export (no model.pt or model.onnx)", source)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, tmp / f.name)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def write_fused(fused: FusedDetector, sources: Sequence[Path], out: Path, images: int) -> Path:
    """``out``/members/k (copies of ``sources``) and ``out``/fusion.json (written last,
    atomically: a folder without it is not a fused run). The caller holds ``out``'s lock."""
    members = []
    for k, src in enumerate(sources):
        rel = f"{MEMBERS_DIR}/{k}"
        copy_member(Path(src), out / rel)
        members.append(rel)
    s = fused.settings
    info = {"version": 1, "members": members, "sources": [str(Path(p).resolve()) for p in sources],
            "titles": [m.title for m in fused.members], "residuals": [m.default_residual for m in fused.members],
            "stats": fused.stats, "threshold": s.threshold, "image_threshold": s.image_threshold,
            "image_score": s.image_score, "image_fpr": s.image_fpr, "image_threshold_rule": s.image_threshold_rule,
            "image_threshold_images": images, "calibration_images": images}
    atomic_write_text(out / FUSION_FILE, json.dumps(json_safe(info), indent=1) + "\n")
    return out / FUSION_FILE


def export_fused(run: str | os.PathLike, out: Path, export_member) -> Path:
    """Export member k of the fused run ``run`` into ``out``/members/k with
    ``export_member(k, folder)`` and copy fusion.json last. The caller holds ``out``'s lock."""
    run = Path(run)
    info = read_fusion(run)
    for k, rel in enumerate(info["members"]):
        export_member(k, out / rel)
    text = (run / FUSION_FILE).read_text()
    atomic_write_text(out / FUSION_FILE, text)
    return out / FUSION_FILE
