"""Dataset layouts: which files are training images, test images and ground-truth masks.

Everything loads through :func:`load_dataset`, which returns a :class:`Dataset`:
``train`` (defect-free images) and ``test`` (:class:`Sample` = image, mask, defect type,
output-relative path). Layouts (``format`` names):

``mvtec``         ROOT/train/good/*, ROOT/test/good/*, ROOT/test/<defect>/*,
                  ROOT/ground_truth/<defect>/<stem>_mask.<ext>
``nanotwice``     ROOT/Normal/* (defect-free, all for training),
                  ROOT/Anomalous/images/* with ROOT/Anomalous/gt/<stem>_gt.<ext>; type "anomalous"
``magnetic-tile`` ROOT/MT_<Class>/Imgs/<name>.jpg with the mask <name>.png beside it (soft edges,
                  defect where > 127, so no warnings about non-binary masks). MT_Free is
                  defect-free and split into train and test: see :func:`split_names`. Other
                  classes are test types named by the lower-cased class ("MT_Blowhole" -> "blowhole").
``generic``       train_dir: defect-free images (subfolders included). test_dir: test images,
                  directly in it or in subfolders whose names become the defect type. mask_dir:
                  masks named <stem><mask_suffix>.<any image ext>, either in the same subfolder
                  as in test_dir or directly in mask_dir. A test image without a mask is "good"
                  if it lies directly in test_dir or in a folder named "good"; in any other
                  subfolder it is a defective image without its mask (an error). An image
                  directly in test_dir with a mask gets the type "defect".

Bad data: a missing or empty folder is an error. Hidden files (".name") are ignored silently;
other non-image files are ignored with one log line per folder. Unreadable, truncated or
empty files, ambiguous names (a.png next to a.jpg), defective images without a mask, masks
without an image, and masks of the wrong size raise :class:`SsimaeError`; with
``skip_bad=True`` they are logged as "skipping <file>: <problem>", recorded in
``Dataset.skipped`` and left out (a test image goes with its bad mask and vice versa).
Non-binary masks are thresholded (defect where > half the range) with one warning each;
constant (all-black / all-white) images give one warning and are kept; small images
(narrower than a patch) and mixed sizes, bit depths and alpha channels are fine.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ssimae.errors import SsimaeError
from ssimae.io.images import is_image_file, read_image, read_mask_checked

GOOD = "good"
FORMATS = ("mvtec", "nanotwice", "magnetic-tile", "generic")
PROGRESS_MIN_FILES = 100  # show a progress bar when checking at least this many files


@dataclass(frozen=True)
class Sample:
    """One test image.

    image: the image file. mask: its ground-truth mask, or None meaning "all defect-free"
    (only for defect_type "good"). defect_type: "good" for defect-free images, else the
    defect class. rel: a relative path for outputs that mirrors the dataset structure and is
    unique within the dataset, e.g. "crack/000.png" next to "good/000.png"; its stem is
    unique within its folder too, so ``rel.with_suffix(".png")`` never collides either.
    """

    image: Path
    mask: Path | None
    defect_type: str
    rel: PurePath


@dataclass
class Dataset:
    """A loaded dataset: training images, test samples, and what was skipped or warned about."""

    root: Path
    layout: str
    train: list[Path]
    test: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        """Defect types of the test samples: "good" first (if present), then the others sorted."""
        types = sorted({s.defect_type for s in self.test})
        return ([GOOD] if GOOD in types else []) + [t for t in types if t != GOOD]


class _Issues:
    """Collects problems: raise them, or (skip_bad) log, record and let the caller drop the file."""

    def __init__(self, skip_bad: bool, log: Callable[[str], object] | None):
        self.skip_bad = skip_bad
        self.log = log or (lambda _msg: None)
        # Problems (skipped files, warnings) go to stderr where the log is plain print (the
        # command line): stdout keeps the results. Another log gets them as it gets the rest.
        # (``log is print`` is not enough: a library may replace builtins.print after a default
        # ``log=print`` was bound, as Ray Data's progress bars do while a dataset executes.)
        plain = log is print or (getattr(log, "__name__", None) == "print" and getattr(log, "__module__", None) == "builtins")
        self.problem = (lambda msg: print(msg, file=sys.stderr)) if plain else self.log
        self.skipped: list[tuple[Path, str]] = []
        self.warnings: list[str] = []

    def bad(self, path: Path, problem: str) -> None:
        """A file that cannot be used: raise SsimaeError, or record and log it when skipping."""
        if not self.skip_bad:
            raise SsimaeError(problem, path)
        self.skipped.append((Path(path), problem))
        self.problem(f"skipping {path}: {problem}")

    def warn(self, path: Path, problem: str) -> None:
        """A usable file with something worth knowing: one log line, kept in ``warnings``."""
        msg = f"{path}: {problem}"
        self.warnings.append(msg)
        self.problem(f"warning: {msg}")


# ----------------------------------------------------------------------------- listing


def _require_dir(folder: Path) -> None:
    """Raise SsimaeError unless ``folder`` is an existing directory."""
    if not folder.exists():
        raise SsimaeError("folder not found", folder)
    if not folder.is_dir():
        raise SsimaeError("not a folder", folder)


class FolderWalk:
    """What one recursive walk of a folder has visited, so that it visits each real folder and
    counts each real file once: a symbolic link back to the folder or one of its parents (a
    loop: ``ln -s . loop``, ``ln -s .. up``), or to a folder or file already walked, is not
    followed (``log`` says so). Links to folders elsewhere are followed."""

    def __init__(self, root: Path, log: Callable[[str], object] | None = None):
        self.root = os.path.realpath(root)
        self.log = log or (lambda _msg: None)
        self.folders: set[str] = set()
        self.files: set[str] = set()

    def enter(self, folder: Path) -> bool:
        """True if ``folder`` is to be walked (the first visit of its real folder, not a loop)."""
        real = os.path.realpath(folder)
        loop = real in self.folders or self.root == real or self.root.startswith(real.rstrip(os.sep) + os.sep)
        if loop and self.folders:
            self.log(f"ignoring {folder}: a link to a folder already searched (a symbolic link loop)")
            return False
        self.folders.add(real)
        return True

    def first(self, file: Path) -> bool:
        """True the first time the real file behind ``file`` is seen in this walk."""
        real = os.path.realpath(file)
        if real in self.files:
            self.log(f"ignoring {file}: the same file as one already found (a symbolic link)")
            return False
        self.files.add(real)
        return True


def walk_images(folder: Path, log: Callable[[str], object] | None = None) -> list[Path]:
    """Image files under ``folder``, recursively, sorted, hidden entries skipped; each real
    folder and file once (see :class:`FolderWalk`)."""
    walk, found = FolderWalk(folder, log), []

    def visit(d: Path) -> None:
        if not walk.enter(d):
            return
        for entry in sorted(d.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                visit(entry)
            elif entry.is_file() and is_image_file(entry) and walk.first(entry):
                found.append(entry)

    visit(Path(folder))
    return found


def folder_label(rel: PurePath) -> str | None:
    """The label of an image from its path ``rel`` relative to the folder it was found in:
    the first folder under it (``good/a.png`` and ``good/nested/a.png`` -> "good",
    ``crack/a.png`` -> "crack"), None for an image directly in it. Only exactly "good" (lower
    case, as every layout spells it) means defect-free; ``Good`` is a defect type, as in the
    generic layout."""
    return rel.parts[0] if len(rel.parts) > 1 else None


def _list_files(folder: Path, issues: _Issues, *, recursive: bool = False,
                walk: FolderWalk | None = None) -> list[Path]:
    """Image files in ``folder`` (sorted), ignoring hidden entries and non-image files.

    Non-image files are reported with one log line per folder. Two images with the same
    stem in one folder (a.png, a.jpg) are ambiguous: both are bad (error or skipped).
    ``recursive`` searches subfolders too, each real folder and file once (:class:`FolderWalk`).
    """
    _require_dir(folder)
    files: list[Path] = []
    others: list[str] = []
    walk = walk or FolderWalk(folder, issues.problem)
    if not walk.enter(folder):
        return []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive:
                files.extend(_list_files(entry, issues, recursive=True, walk=walk))
            continue
        if recursive and not walk.first(entry):
            continue
        if is_image_file(entry):
            files.append(entry)
        else:
            others.append(entry.name)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        issues.log(f"ignoring {len(others)} non-image file(s) in {folder}: {shown}")
    return _drop_ambiguous(files, issues)


def _drop_ambiguous(files: list[Path], issues: _Issues) -> list[Path]:
    """Remove (after reporting) files whose stem occurs more than once in the same folder."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        groups.setdefault((f.parent, f.stem), []).append(f)
    keep = []
    for f in files:
        group = groups[(f.parent, f.stem)]
        if len(group) == 1:
            keep.append(f)
        else:
            names = ", ".join(g.name for g in group)
            issues.bad(f, f"ambiguous: several images named {f.stem!r} in one folder ({names})")
    return keep


def _nonempty(files: list[Path], folder: Path) -> list[Path]:
    """``files`` unless empty, in which case SsimaeError("no images in folder")."""
    if not files:
        raise SsimaeError("no images in folder", folder)
    return files


def _match_masks(images: Sequence[Path], masks: Sequence[Path], mask_name: Callable[[Path], str],
                 issues: _Issues, *, required: bool, expected: Callable[[Path], str]) -> dict[Path, Path | None]:
    """Pair images with masks by name -> {image: mask or None}; report the unpaired.

    ``mask_name(image)`` is the stem its mask must have (any image extension). Masks paired
    with no image are bad. Images without a mask are bad when ``required`` (they are left
    out of the result), else mapped to None.
    """
    by_stem = {m.stem: m for m in masks}
    pairs: dict[Path, Path | None] = {}
    for img in images:
        mask = by_stem.pop(mask_name(img), None)
        if mask is None and required:
            issues.bad(img, f"defective test image has no mask (expected {expected(img)})")
            continue
        pairs[img] = mask
    for mask in by_stem.values():
        issues.bad(mask, "mask without an image")
    return pairs


# ----------------------------------------------------------------------------- layouts


@dataclass
class _Found:
    """What a layout reader found, before decoding: train images, test samples, options."""

    train: list[Path]
    test: list[Sample]
    train_folder: Path
    check_binary: bool = True


def _load_mvtec(root: Path, issues: _Issues) -> _Found:
    """ROOT/train/good, ROOT/test/<type>, ROOT/ground_truth/<type>/<stem>_mask.*"""
    train_dir = root / "train" / GOOD
    train = _nonempty(_list_files(train_dir, issues), train_dir)
    test_root, gt_root = root / "test", root / "ground_truth"
    _require_dir(test_root)
    types = sorted(d.name for d in test_root.iterdir() if d.is_dir() and not d.name.startswith("."))
    gt_types = sorted(d.name for d in gt_root.iterdir() if d.is_dir() and not d.name.startswith(".")) \
        if gt_root.is_dir() else []
    test: list[Sample] = []
    for dtype in types:
        images = _list_files(test_root / dtype, issues)
        gt_dir = gt_root / dtype
        masks = _list_files(gt_dir, issues) if gt_dir.is_dir() else []
        pairs = _match_masks(images, masks, lambda p: p.stem + "_mask", issues, required=dtype != GOOD,
                             expected=lambda p, d=gt_dir: str(d / (p.stem + "_mask.png")))
        test += [Sample(img, m, dtype, PurePath(dtype, img.name)) for img, m in pairs.items()]
    for dtype in gt_types:
        if dtype not in types:
            for mask in _list_files(gt_root / dtype, issues):
                issues.bad(mask, f"mask without an image (no folder {test_root / dtype})")
    if not test and not issues.skipped:
        raise SsimaeError("no test images", test_root)
    return _Found(train, test, train_dir)


def _load_nanotwice(root: Path, issues: _Issues) -> _Found:
    """ROOT/Normal/* (train), ROOT/Anomalous/images/* + ROOT/Anomalous/gt/<stem>_gt.*"""
    normal = root / "Normal"
    train = _nonempty(_list_files(normal, issues), normal)
    img_dir, gt_dir = root / "Anomalous" / "images", root / "Anomalous" / "gt"
    images = _nonempty(_list_files(img_dir, issues), img_dir)
    masks = _list_files(gt_dir, issues)
    pairs = _match_masks(images, masks, lambda p: p.stem + "_gt", issues, required=True,
                         expected=lambda p: str(gt_dir / (p.stem + "_gt.png")))
    test = [Sample(img, m, "anomalous", PurePath("anomalous", img.name)) for img, m in pairs.items()]
    return _Found(train, test, normal)


def seeded_split(items: Sequence, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split of ``items`` -> (kept, held out), both in the order drawn.

    Rule: sort the items, permute them with ``numpy.random.default_rng(seed).permutation``;
    the first ``round(fraction * n)`` are held out, at least 1 and at most n - 1 when
    fraction > 0 and n >= 2 (none when n < 2). ``fraction`` must be in [0, 1). Used for the
    test split of layouts without one and for the validation images of training.
    """
    if not 0.0 <= fraction < 1.0:
        raise SsimaeError(f"the held-out fraction must be in [0, 1), got {fraction}")
    items = sorted(items)
    n = len(items)
    n_held = min(max(int(round(fraction * n)), 1), n - 1) if fraction > 0 and n >= 2 else 0
    order = np.random.default_rng(seed).permutation(n)
    return [items[i] for i in order[n_held:]], [items[i] for i in order[:n_held]]


def split_names(names: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/test split of defect-free file names -> (train, test), both sorted
    (:func:`seeded_split` with ``test_fraction``)."""
    if not 0.0 <= test_fraction < 1.0:
        raise SsimaeError(f"test_fraction must be in [0, 1), got {test_fraction}")
    train, test = seeded_split(names, test_fraction, seed)
    return sorted(train), sorted(test)


def _mt_class_files(imgs: Path, issues: _Issues) -> dict[Path, Path | None]:
    """ROOT/MT_X/Imgs -> {image (non-.png): mask (.png of the same stem) or None}."""
    files = _list_files_keep_pairs(imgs, issues)
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(f.stem, []).append(f)
    pairs: dict[Path, Path | None] = {}
    for stem in sorted(groups):
        masks = [f for f in groups[stem] if f.suffix.lower() == ".png"]
        images = [f for f in groups[stem] if f.suffix.lower() != ".png"]
        if len(images) > 1 or len(masks) > 1:
            names = ", ".join(f.name for f in groups[stem])
            for f in groups[stem]:
                issues.bad(f, f"ambiguous: several files named {stem!r} in one folder ({names})")
        elif not images:
            issues.bad(masks[0], "mask without an image (expected a .jpg of the same name)")
        else:
            pairs[images[0]] = masks[0] if masks else None
    return pairs


def _list_files_keep_pairs(folder: Path, issues: _Issues) -> list[Path]:
    """Like :func:`_list_files` but without the duplicate-stem check (image + mask share stems)."""
    _require_dir(folder)
    files, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        (files if is_image_file(entry) else others).append(entry)
    if others:
        issues.log(f"ignoring {len(others)} non-image file(s) in {folder}: " + ", ".join(o.name for o in others[:5])
                   + (", ..." if len(others) > 5 else ""))
    return files


def _load_magnetic_tile(root: Path, issues: _Issues, test_fraction: float, seed: int) -> _Found:
    """ROOT/MT_<Class>/Imgs/<name>.jpg + <name>.png; MT_Free split by :func:`split_names`."""
    classes = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("MT_"))
    free = root / "MT_Free"
    if free not in classes:
        raise SsimaeError("no MT_Free folder: the magnetic-tile layout needs its defect-free images", root)
    types: dict[str, Path] = {}
    for d in classes:
        t = GOOD if d == free else d.name[3:].lower()
        if t in types:
            raise SsimaeError(f"two class folders give the defect type {t!r}: {types[t].name}, {d.name}", root)
        types[t] = d
    free_pairs = _mt_class_files(free / "Imgs", issues)
    if not free_pairs:
        raise SsimaeError("no images in folder", free / "Imgs")
    by_name = {p.name: p for p in free_pairs}
    train_names, test_names = split_names(list(by_name), test_fraction, seed)
    train = [by_name[n] for n in train_names]
    test = [Sample(by_name[n], free_pairs[by_name[n]], GOOD, PurePath(GOOD, n)) for n in test_names]
    for t, d in types.items():
        if t == GOOD:
            continue
        pairs = _mt_class_files(d / "Imgs", issues)
        for img, mask in pairs.items():
            if mask is None:
                issues.bad(img, f"defective test image has no mask (expected {img.with_suffix('.png')})")
            else:
                test.append(Sample(img, mask, t, PurePath(t, img.name)))
    return _Found(train, test, free / "Imgs", check_binary=False)


def _load_generic(train_dir: Path | None, test_dir: Path | None, mask_dir: Path | None, mask_suffix: str,
                  issues: _Issues) -> _Found:
    """train_dir / test_dir (+ subfolders as types) / mask_dir (see the module doc)."""
    train = _nonempty(_list_files(train_dir, issues, recursive=True), train_dir) if train_dir else []
    test: list[Sample] = []
    if test_dir is not None:
        masks = _list_files(mask_dir, issues, recursive=True) if mask_dir is not None else []
        mask_set = {m.resolve() for m in masks}
        images = [p for p in _list_files(test_dir, issues, recursive=True) if p.resolve() not in mask_set]
        images = _nonempty(images, test_dir)
        test = _generic_samples(test_dir, images, mask_dir, masks, mask_suffix, issues)
    return _Found(train, test, train_dir or test_dir)


def _generic_samples(test_dir: Path, images: list[Path], mask_dir: Path | None, masks: list[Path],
                     mask_suffix: str, issues: _Issues) -> list[Sample]:
    """Pair generic test images with masks (same subfolder first, then directly in mask_dir)."""
    index: dict[tuple[PurePath, str], Path] = {}
    for m in masks:
        index[(PurePath(m.parent.relative_to(mask_dir)), m.stem)] = m
    used: dict[Path, Path] = {}
    test: list[Sample] = []
    for img in images:
        rel = PurePath(img.relative_to(test_dir))
        key = img.stem + mask_suffix
        mask = index.get((rel.parent, key)) or index.get((PurePath("."), key))
        folder = folder_label(rel)
        if mask is not None and mask in used:
            issues.bad(img, f"ambiguous: mask {mask} also matches {used[mask]}")
            continue
        if mask is None and folder not in (None, GOOD):
            where = mask_dir / rel.parent / (key + ".png") if mask_dir else "a mask (no mask_dir given)"
            issues.bad(img, f"defective test image has no mask (expected {where})")
            continue
        if mask is not None:
            used[mask] = img
        dtype = folder if folder is not None else (GOOD if mask is None else "defect")
        test.append(Sample(img, mask, dtype, rel))
    for m in masks:
        if m not in used:
            issues.bad(m, f"mask without an image (expected a test image named {m.stem[:len(m.stem) - len(mask_suffix)]!r})"
                       if mask_suffix and m.stem.endswith(mask_suffix) else "mask without an image")
    return test


# ----------------------------------------------------------------------------- detection


def detect_layout(root: str | os.PathLike) -> str:
    """Name the layout of a dataset folder.

    Rules, in order: ROOT/train/good and ROOT/test folders -> "mvtec"; ROOT/Normal and
    ROOT/Anomalous -> "nanotwice"; any ROOT/MT_* folder -> "magnetic-tile". Otherwise
    SsimaeError naming the folder and listing what was expected (and the sub-datasets, if
    ROOT holds several datasets, e.g. all MVTec categories).
    """
    root = Path(root)
    _require_dir(root)
    found = _layout_of(root)
    if found:
        return found
    subs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    inner = [s for s in subs if _layout_of(root / s)]
    hint = f"; it holds several datasets, pass one of: {', '.join(inner)}" if inner else \
        f"; found {', '.join(subs[:8]) + (', ...' if len(subs) > 8 else '') if subs else 'no subfolders'}"
    raise SsimaeError("cannot tell the dataset layout: expected train/good/ and test/ (mvtec), Normal/ and "
                      "Anomalous/ (nanotwice) or MT_*/ folders (magnetic-tile); for other layouts give "
                      f"train_dir and test_dir (generic){hint}", root)


def _layout_of(root: Path) -> str | None:
    """The layout name by the rules of :func:`detect_layout`, or None."""
    if (root / "train" / GOOD).is_dir() and (root / "test").is_dir():
        return "mvtec"
    if (root / "Normal").is_dir() and (root / "Anomalous").is_dir():
        return "nanotwice"
    if any(d.is_dir() and d.name.startswith("MT_") for d in root.iterdir()):
        return "magnetic-tile"
    return None


# ----------------------------------------------------------------------------- verification


def _check_image(path: Path) -> tuple[tuple[int, int] | None, float | None, SsimaeError | None]:
    """Decode one image -> (shape, constant value or None, error or None)."""
    try:
        img = read_image(path)
    except SsimaeError as err:
        return None, None, err
    lo, hi = float(img.min()), float(img.max())
    return img.shape, (lo if lo == hi else None), None


def _check_mask(path: Path, shape: tuple[int, int] | None) -> tuple[bool, SsimaeError | None]:
    """Decode one mask against its image's shape -> (is binary, error or None)."""
    try:
        return read_mask_checked(path, shape)[1], None
    except SsimaeError as err:
        return True, err


def _parallel(fn: Callable, args: Iterable[tuple], total: int, desc: str, bar: bool) -> list:
    """Map ``fn`` over argument tuples with a few threads (decoders release the GIL), in order."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda a: fn(*a), args)
        return list(tqdm(results, total=total, desc=desc, disable=None if bar else True, leave=False))


def _verify(found: _Found, issues: _Issues, progress: bool = True) -> tuple[list[Path], list[Sample]]:
    """Fully decode every image and mask once -> (usable train images, usable test samples)."""
    images = list(dict.fromkeys(found.train + [s.image for s in found.test]))
    masks = [s for s in found.test if s.mask is not None]
    bar = progress and len(images) + len(masks) >= PROGRESS_MIN_FILES
    checked = dict(zip(images, _parallel(_check_image, [(p,) for p in images], len(images), "checking images", bar)))
    for path in images:
        shape, constant, err = checked[path]
        if err is not None:
            issues.bad(path, err.problem)
        elif constant is not None:
            issues.warn(path, f"constant image (every pixel is {constant:.3f}); kept")
    ok_masks = {}
    todo = [(s.mask, checked[s.image][0]) for s in masks if checked[s.image][2] is None]
    for (mask, _), (binary, err) in zip(todo, _parallel(_check_mask, todo, len(todo), "checking masks", bar)):
        if err is not None:
            issues.bad(mask, err.problem)
        else:
            ok_masks[mask] = True
            if not binary and found.check_binary:
                issues.warn(mask, "mask is not binary; thresholded (defect where > half the range)")
    train = [p for p in found.train if checked[p][2] is None]
    test = []
    for s in found.test:
        if checked[s.image][2] is not None:
            continue
        if s.mask is not None and s.mask not in ok_masks:
            issues.log(f"skipping {s.image}: its mask {s.mask} is unusable")
            continue
        test.append(s)
    return train, test


# ----------------------------------------------------------------------------- entry point


def load_dataset(root: str | os.PathLike | None = None, format: str = "auto", *,
                 train_dir: str | os.PathLike | None = None, test_dir: str | os.PathLike | None = None,
                 mask_dir: str | os.PathLike | None = None, mask_suffix: str = "",
                 test_fraction: float = 0.2, seed: int = 0, skip_bad: bool = False, verify: bool = True,
                 log: Callable[[str], object] | None = print, progress: bool = True) -> Dataset:
    """Find (and with ``verify`` fully decode once) a dataset's training and test files.

    root: the dataset folder for "mvtec", "nanotwice", "magnetic-tile" or "auto" (see
    :func:`detect_layout`). With train_dir / test_dir (/ mask_dir, mask_suffix) the layout is
    "generic"; either may be left out (no training or no test images). test_fraction and
    seed split MT_Free for "magnetic-tile" (:func:`split_names`). skip_bad: log, record and
    leave out bad files instead of raising. log: gets one line per message (None: silent).
    progress: show a progress bar while checking (only for 100 files or more).
    Raises SsimaeError for bad input (see the module doc).
    """
    issues = _Issues(skip_bad, log)
    fmt = _resolve_format(root, format, train_dir, test_dir, mask_dir)
    if fmt == "generic":
        tr, te, ma = (Path(d) if d is not None else None for d in (train_dir, test_dir, mask_dir))
        found = _load_generic(tr, te, ma, mask_suffix, issues)
        root_path = Path(root) if root is not None else (te or tr)
    else:
        root_path = Path(root)
        _require_dir(root_path)
        if fmt == "mvtec":
            found = _load_mvtec(root_path, issues)
        elif fmt == "nanotwice":
            found = _load_nanotwice(root_path, issues)
        else:
            found = _load_magnetic_tile(root_path, issues, test_fraction, seed)
    train, test = _verify(found, issues, progress) if verify else (found.train, found.test)
    if found.train and not train:
        raise SsimaeError("no usable training images (all were skipped)", found.train_folder)
    if fmt != "generic" and not test:
        raise SsimaeError("no usable test images (all were skipped)", root_path)
    return Dataset(root_path, fmt, train, test, issues.skipped, issues.warnings)


def _resolve_format(root, format: str, train_dir, test_dir, mask_dir) -> str:
    """The layout to load: ``format``, detected from ``root``, or "generic" for explicit dirs."""
    if format not in ("auto",) + FORMATS:
        raise SsimaeError(f"unknown dataset format {format!r}; expected auto, {', '.join(FORMATS)}")
    explicit = train_dir is not None or test_dir is not None
    if explicit:
        if format not in ("auto", "generic"):
            raise SsimaeError(f"train_dir/test_dir are for the generic layout, not {format!r}")
        return "generic"
    if mask_dir is not None:
        raise SsimaeError("mask_dir needs test_dir (generic layout)")
    if format == "generic":
        raise SsimaeError("the generic layout needs train_dir and/or test_dir")
    if root is None:
        raise SsimaeError("no dataset given: pass a dataset folder, or train_dir and test_dir")
    return detect_layout(root) if format == "auto" else format
