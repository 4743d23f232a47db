"""Training data of Sec. 4.2: random 128x128 patches cropped from defect-free images.

The paper trains on 10 000 patches per epoch, randomly cropped from the training images,
which may first be downscaled (512x512 textures -> 256x256). Here:

* The images are first prepared by :mod:`ssimae.core.preprocess` (resize, mirror padding).
* :class:`RandomPatches` is a torch Dataset of ``patches_per_epoch`` random patches whose
  item ``i`` of epoch ``e`` depends only on ``(seed, e, i)`` (and the images and settings),
  never on the number of DataLoader workers. Preprocessed images are held in memory when they
  fit in ``cache_bytes``; otherwise they are read on demand through a small per-process LRU
  cache (streaming), so memory stays bounded for datasets larger than memory.
* :func:`make_loader` wraps it in a DataLoader that passes the epoch to its workers.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from ssimae.errors import SsimaeError
from ssimae.io.images import image_size
from ssimae.models.network import PATCH_SIZE
from ssimae.core.preprocess import Preprocess, prepare_image
from ssimae.runs.settings import AUGMENTATIONS, PATCHES_PER_EPOCH  # noqa: F401  (re-exported)

DEFAULT_CACHE_BYTES = 2 * 2**30  # hold preprocessed images in memory up to this size
DEFAULT_LRU_BYTES = 256 * 2**20  # per-process cache of decoded images when streaming
STREAMING_PATCHES_PER_IMAGE = 8  # consecutive patches per decoded image when streaming


class RandomPatches(torch.utils.data.Dataset):
    """``patches_per_epoch`` random patches -> float32 tensors (C, patch, patch) in [0, 1], C = 1
    (gray, the paper) or 3 (``preprocess.color``).

    Sampling of item i in epoch e (``set_epoch``): items are grouped in blocks of
    ``patches_per_image`` consecutive indices; block ``i // patches_per_image`` picks an image
    with probability proportional to its preprocessed area (H' * W', before padding), drawn
    from ``numpy.random.default_rng((seed, e, block))``; the crop's top-left corner is uniform
    over all positions of the padded image, drawn from ``default_rng((seed, e, i, 1))``.
    With ``augment`` ("flips" or "dihedral", options beyond the paper) the crop is then turned
    or flipped by :func:`augment_patch`, drawn from ``default_rng((seed, e, i, 2))``.
    So an item depends only on (seed, e, i) and the settings, not on workers or order.

    Memory: arrays, and files whose preprocessed padded float32 size totals at most
    ``cache_bytes``, are prepared once and held in memory. Larger sets of files stream: an
    image is read when a patch needs it and kept in a per-process LRU cache of ``lru_bytes``.
    ``patches_per_image`` defaults to 1 in memory (independent patches) and to
    STREAMING_PATCHES_PER_IMAGE when streaming, so that each decoded image yields several
    patches (consecutive indices share an image; batches of a DataLoader without shuffling,
    as :func:`make_loader` makes, are contiguous).
    """

    def __init__(self, images: Sequence[str | os.PathLike] | Sequence[np.ndarray], patches_per_epoch: int = PATCHES_PER_EPOCH,
                 patch_size: int = PATCH_SIZE, preprocess: Preprocess = Preprocess(), seed: int = 0,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, *, patches_per_image: int | None = None,
                 lru_bytes: int = DEFAULT_LRU_BYTES, progress: bool = True, augment: str = "none"):
        if len(images) == 0:
            raise SsimaeError("no training images")
        if patches_per_epoch < 1 or patch_size < 1 or seed < 0:
            raise ValueError("patches_per_epoch and patch_size must be positive, seed non-negative")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r} (expected one of {', '.join(AUGMENTATIONS)})")
        self.augment = augment
        self.sources = list(images)
        self.patches_per_epoch = int(patches_per_epoch)
        self.patch_size = int(patch_size)
        self.preprocess = preprocess
        self.seed = int(seed)
        self.epoch = 0
        self.lru_bytes = int(lru_bytes)
        arrays = [isinstance(s, np.ndarray) for s in self.sources]
        shapes = [preprocess.output_shape(s.shape if a else image_size(s)) for s, a in zip(self.sources, arrays)]
        self.shapes = [(max(h, patch_size), max(w, patch_size)) for h, w in shapes]  # padded
        areas = np.array([h * w for h, w in shapes], dtype=np.float64)
        self._cumulative = np.cumsum(areas / areas.sum())
        self.nbytes = sum(h * w * 4 * preprocess.channels for h, w in self.shapes)
        self.in_memory = all(arrays) or self.nbytes <= cache_bytes
        default_k = 1 if self.in_memory else STREAMING_PATCHES_PER_IMAGE
        self.patches_per_image = int(patches_per_image or default_k)
        self.reads = 0  # images prepared by this process (for measurements)
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lru_used = 0
        self._images = self._load_all(progress) if self.in_memory else None

    def _load_all(self, progress: bool) -> list[np.ndarray]:
        """Prepare every image once (a few threads; decoders release the GIL)."""
        n = len(self.sources)
        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            it = pool.map(lambda s: prepare_image(s, self.preprocess, self.patch_size), self.sources)
            images = list(tqdm(it, total=n, desc="loading images", disable=True if not progress or n < 100 else None, leave=False))
        self.reads += n
        return images

    def __len__(self) -> int:
        return self.patches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose patches are returned (items differ between epochs)."""
        if epoch < 0:
            raise ValueError("epoch must be non-negative")
        self.epoch = int(epoch)

    def locate(self, epoch: int, index: int) -> tuple[int, int, int]:
        """(image index, top, left) of item ``index`` in ``epoch``, in preprocessed padded coordinates."""
        block = index // self.patches_per_image
        u = np.random.default_rng((self.seed, epoch, block)).random()
        k = min(int(np.searchsorted(self._cumulative, u, side="right")), len(self.sources) - 1)
        h, w = self.shapes[k]
        rng = np.random.default_rng((self.seed, epoch, index, 1))
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        return k, top, left

    def image(self, k: int) -> np.ndarray:
        """Preprocessed, padded image k: float32 (H'', W'') or (H'', W'', 3) in [0, 1] (from
        memory or the LRU)."""
        if self._images is not None:
            return self._images[k]
        img = self._lru.get(k)
        if img is not None:
            self._lru.move_to_end(k)
            return img
        img = prepare_image(self.sources[k], self.preprocess, self.patch_size)
        if img.shape[:2] != self.shapes[k]:
            raise SsimaeError(f"image changed size while training: now {img.shape[:2]}, expected {self.shapes[k]}",
                              self.sources[k])
        self.reads += 1
        self._lru[k] = img
        self._lru_used += img.nbytes
        while self._lru_used > self.lru_bytes and len(self._lru) > 1:
            _, old = self._lru.popitem(last=False)
            self._lru_used -= old.nbytes
        return img

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        """Item ``index`` of the current epoch, or of epoch e for ``index = (e, i)``."""
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        if not -self.patches_per_epoch <= i < self.patches_per_epoch:
            raise IndexError(f"patch index {i} out of range for {self.patches_per_epoch} patches")
        i %= self.patches_per_epoch
        k, top, left = self.locate(epoch, i)
        p = self.patch_size
        crop = self.image(k)[top:top + p, left:left + p]
        if self.augment != "none":
            crop = augment_patch(crop, self.augment, np.random.default_rng((self.seed, epoch, i, 2)))
        if crop.ndim == 3:  # color: (p, p, 3) -> (3, p, p)
            return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        return torch.from_numpy(crop.copy())[None]

    def __getstate__(self) -> dict:
        """Pickle without the LRU contents (each worker process starts with an empty cache)."""
        state = self.__dict__.copy()
        state["_lru"], state["_lru_used"], state["reads"] = OrderedDict(), 0, 0
        return state


def augment_patch(patch: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A random symmetry of a square (H, W) or (H, W, C) patch (a view; copy before writing).

    "flips": left-right and up-down flips, each with probability 1/2 (4 outcomes);
    "dihedral": a turn by k * 90 degrees (k uniform in 0..3), then a left-right flip with
    probability 1/2 (all 8 symmetries of the square). "none": the patch itself.
    """
    if kind == "flips":
        lr, ud = rng.integers(0, 2, size=2)
        return patch[::-1 if ud else 1, ::-1 if lr else 1]
    if kind == "dihedral":
        k, lr = rng.integers(0, 4), rng.integers(0, 2)
        out = np.rot90(patch, k)
        return out[:, ::-1] if lr else out
    return patch


class EpochSampler(Sampler):
    """Yields (epoch, i) for i in range(start, len(dataset)), reading ``dataset.epoch`` when
    iteration starts, in the main process: persistent workers hold stale copies of the dataset,
    so the epoch travels with each index instead. ``start`` > 0 resumes inside an epoch; it
    applies to the next iteration only (later epochs start at 0).

    ``shard=(rank, world)`` with ``batch_size`` b (one process's batch): the items of process
    ``rank`` of ``world`` training one run together (:mod:`ssimae.cluster.ddp`). The epoch's
    items are cut into global batches of b * world consecutive indices (the last one shorter),
    and each global batch into ``world`` equal consecutive slices, slice ``rank`` for this
    process; so the processes' batches of one step together are the single-process batch of
    that step. ``start`` is then a multiple of b * world."""

    def __init__(self, dataset: RandomPatches, start: int = 0, shard: tuple[int, int] = (0, 1), batch_size: int = 1):
        self.dataset = dataset
        self.start = int(start)
        self.shard = shard
        self.batch_size = int(batch_size)

    def _indices(self, start: int):
        n, (rank, world) = len(self.dataset), self.shard
        if world == 1:
            return range(start, n)
        step = self.batch_size * world
        return [i for s in range(start, n, step) for k in [(min(s + step, n) - s) // world]
                for i in range(s + rank * k, s + (rank + 1) * k)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.dataset.epoch, min(self.start, len(self.dataset))
        self.start = 0
        return ((epoch, i) for i in self._indices(start))

    def __len__(self) -> int:
        return len(self._indices(min(self.start, len(self.dataset))))


def _worker_init(_worker_id: int) -> None:
    """DataLoader workers use one torch thread each (cropping is numpy work)."""
    torch.set_num_threads(1)


def make_loader(dataset: RandomPatches, batch_size: int = 32, num_workers: int = 0, *, pin_memory: bool = False,
                drop_last: bool = False, prefetch_factor: int | None = None, start: int = 0,
                shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """DataLoader of (B, C, patch, patch) float32 batches over ``dataset`` in index order.

    Items are already random, so there is no shuffling; call ``dataset.set_epoch(e)`` before
    iterating epoch e (the :class:`EpochSampler` carries it to the workers); ``start`` skips
    the first items of the first iteration (resuming mid-epoch); ``shard=(rank, world)``: this
    process's share of each global batch (:class:`EpochSampler`; ``batch_size`` is then the
    batch of one process). Workers are
    persistent when ``num_workers > 0``. The loader has its own seeded torch generator, so
    iterating it neither depends on nor advances the global torch RNG.
    """
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, worker_init_fn=_worker_init)
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(dataset, start, shard, batch_size),
                      num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last, generator=torch.Generator().manual_seed(0),
                      **kwargs)
