"""Where the time of scoring goes: every model, both engines, fp32 and int8, 1 and 2 threads,
sliding window against whole-image passes, measured interleaved in one run.

    python benchmarks/bench_inference.py [RUN ...] [--n 8] [--sizes 256x256,512x512,1024x700]
        [--threads 1,2] [--rounds 3] [--engines torch,onnx] [--precisions fp32,int8]
        [--tilings window,whole] [--torch-options none,channels_last,compile]
        [--passes "" "cell_sizes=8" "cell_sizes=8;mask_sets=2"] [--auc-data ROOT]
        [--out docs/results/speed]

RUN: trained run folders (any models). Without them the benchmark trains one run of every
model that trains without downloads (all but ``fm``) on the synthetic demo data, with the
models' default networks and recipes but 1 epoch of 32 patches: the speed is a network's,
not its training's, but the AUCs of such runs mean nothing (give real runs for them).

Each configuration (model x engine x precision x threads x tiling x test-time passes x
torch options; int8 is the ONNX engine's, whole-image tiling the fully convolutional
models', ``--passes`` the models with test-time settings, e.g. inpaint's cell sizes and mask
sets) scores ``--n`` images of each size (W x H, uniform noise: the time does not depend on
the content) through the whole pipeline (``predict_many``: preprocessing, network, residual,
smoothing, threshold, opening, verdict). After one warm-up call per configuration and size,
``--rounds`` rounds each visit every configuration in turn (so drifts of the machine's speed
hit all alike); the table gives medians over rounds:

- ms per image and images/s;
- passes per image (network forwards over one patch or one tile, times the masks of a model
  that hides cells) and ms per pass;
- GFLOP per image (convolutions and products of the network, counted on the torch path by
  ``torch.utils.flop_counter``) and the share of the machine's peak: GFLOP/s achieved over a
  float32 2048 x 2048 matrix product's GFLOP/s measured in the same run with the same
  threads (int8 rows are held to the same float32 peak);
- with ``--auc-data``, the pixel and image ROC AUC of each configuration (threads and torch
  options do not change the maps, so one per rest of the configuration) on that dataset's
  test images.

Writes OUT/bench_inference.md (the table and the command) and OUT/bench_inference.json
(every measurement, each round's included). Needs onnx and onnxruntime for the ONNX engine.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssimae.core.window import patch_starts, round_up, tile_spans
from ssimae.errors import SsimaeError
from ssimae.inference import scorer as scoring
from ssimae.inference.detector import Detector, TorchOptions
from ssimae.models import MODELS, get_model

UNTRAINABLE_HERE = {"fm"}  # needs AlexNet weights that cannot be downloaded here


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration measured."""

    run: str
    model: str
    engine: str  # torch | onnx
    precision: str  # fp32 | int8
    threads: int
    tiling: str  # window | whole
    passes: str  # test-time model settings, "name=value;..." ("" = the run's)
    torch_options: str  # none | channels_last | compile

    def label(self) -> str:
        extra = [p for p in (self.passes, "" if self.torch_options == "none" else self.torch_options) if p]
        return " ".join([self.model, self.engine, self.precision, f"{self.threads}t", self.tiling, *extra])


def parse_passes(text: str) -> dict:
    """'cell_sizes=8;mask_sets=2' -> {"cell_sizes": "8", "mask_sets": "2"} (parsed by the model)."""
    return dict(item.split("=", 1) for item in text.split(";") if item)


def parse_size(text: str) -> tuple[int, int]:
    """'1024x700' (W x H) -> (700, 1024) (H, W)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def matmul_peak(threads: int, repeats: int = 5) -> float:
    """GFLOP/s of a float32 2048 x 2048 product with ``threads`` torch threads (best of ``repeats``)."""
    torch.set_num_threads(threads)
    a = torch.rand(2048, 2048)
    a @ a
    best = min(timed(lambda: a @ a) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def train_tiny_runs(out: Path) -> list[Path]:
    """One run of every model trainable here, default network, 1 epoch of 32 patches, on demo data."""
    from ssimae.cli.main import main
    from ssimae.data.demo_data import make_demo_data

    data = make_demo_data(out / "data", seed=0)
    runs = []
    for name in MODELS:
        if name in UNTRAINABLE_HERE:
            continue
        run = out / "runs" / name
        if main(["train", "--data", str(data), "--model", name, "--out", str(run), "--epochs", "1",
                 "--patches-per-epoch", "32", "--batch-size", "8", "--quiet"]) != 0:
            raise SystemExit(f"training the tiny {name} run failed")
        runs.append(run)
    return runs


def exports(run: Path, out: Path, precisions: list[str]) -> dict[str, Path | str]:
    """{precision: .onnx file, or the reason it is missing} of a run."""
    from ssimae.commands.export import export

    found: dict[str, Path | str] = {}
    try:
        export(run, out / "fp32")
        found["fp32"] = out / "fp32" / "model.onnx"
    except SsimaeError as e:
        found["fp32"] = str(e)
    if "int8" in precisions:
        try:
            found["int8"] = export(run, out / "int8", int8=True)
        except SsimaeError as e:
            found["int8"] = str(e)
    return found


def configurations(runs: list[Path], args) -> list[Config]:
    """Every configuration the options ask for that exists (see the module docstring)."""
    from ssimae.runs.checkpoint import load_run

    configs = []
    for run in runs:
        name = load_run(run).settings.train.model
        model = get_model(name)
        fully_convolutional = model.geometry(load_run(run).settings.train.params) is not None
        passes = args.passes if model.test_params else [""]
        for engine, precision, threads, tiling, p, opt in itertools.product(
                args.engines, args.precisions, args.threads, args.tilings, passes, args.torch_options):
            if (engine == "torch" and precision != "fp32") or (engine == "onnx" and opt != "none"):
                continue
            if tiling == "whole" and not fully_convolutional:
                continue
            configs.append(Config(str(run), name, engine, precision, threads, tiling, p, opt))
    return configs


def load(config: Config, onnx_files: dict) -> tuple[scoring.Scorer | None, str]:
    """(detector for ``config``, "") or (None, why it is not measured)."""
    changes = {"tiling": config.tiling, "model_params": parse_passes(config.passes)}
    if config.engine == "torch":
        options = TorchOptions(channels_last=config.torch_options == "channels_last",
                               compile=config.torch_options == "compile")
        det = Detector.load(config.run, "cpu", options)
        return Detector(det.network, det.model, dataclasses.replace(det.settings, **changes), det.params, det.device,
                        options), ""
    from ssimae.runtime import OnnxDetector

    path = onnx_files[config.run].get(config.precision)
    if not isinstance(path, Path):
        return None, path or "not exported"
    if changes["model_params"]:
        return None, "test-time passes are fixed by an export (export a run with them)"
    return OnnxDetector.load(path, config.threads).with_settings(tiling=config.tiling), ""


def cost(config: Config, shape: tuple[int, int]) -> tuple[int, float]:
    """(passes, network GFLOP) of one image of ``shape`` (H, W) in ``config`` (counted on the torch path)."""
    from torch.utils.flop_counter import FlopCounterMode

    det, _ = load(dataclasses.replace(config, engine="torch", precision="fp32", torch_options="none"), {})
    s = det.settings
    padded = scoring.prepare(np.zeros(shape, np.float32) if not s.preprocess.color
                             else np.zeros((*shape, 3), np.float32), s)[1]
    params = det.model.with_test_params(det.params, s.model_params)
    spec = det.model.pass_masks(params)
    masks = len(spec["cell_sizes"]) * spec["sets"] if spec else 1
    h, w = padded.shape[-2:]
    if config.tiling == "whole":
        g = det.model.geometry(params)
        tile = g.tile(s.tile_size)
        units = len(tile_spans(round_up(h, g.multiple), tile, g.margin)) * len(tile_spans(round_up(w, g.multiple),
                                                                                          tile, g.margin))
    else:
        units = len(patch_starts(h, stride=s.stride)) * len(patch_starts(w, stride=s.stride))
    with FlopCounterMode(display=False) as counter:
        det.reconstruct([torch.from_numpy(padded)])
    return units * masks, counter.get_total_flops() / 1e9


def auc(det, root: str) -> dict:
    """Pixel and image ROC AUC of ``det`` on the test images of the dataset at ``root``."""
    from ssimae.core.metrics import evaluate_maps
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.test_set import score_test_set

    scores = score_test_set(det, load_dataset(root, log=None, progress=False), progress=False)
    m = evaluate_maps(scores.maps[det.default_residual], scores.masks, scores.types,
                      image_score=det.settings.image_score)
    return {"pixel_roc_auc": m["pixel_roc_auc"], "image_roc_auc": m["image_roc_auc"]}


def measure(configs: list[Config], onnx_files: dict, args) -> list[dict]:
    """Rows of the table: each configuration and size timed in interleaved rounds."""
    rng = np.random.default_rng(0)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    images = {size: [rng.random(size, dtype=np.float32) for _ in range(args.n)] for size in sizes}
    plan, costs, detectors = [], {}, {}
    for c in configs:
        det, why = load(c, onnx_files)
        detectors[c] = det
        for size in sizes:
            row = {**dataclasses.asdict(c), "size": f"{size[1]}x{size[0]}", "n": args.n, "seconds": [], "skipped": why}
            if det is not None:
                key = (c.run, c.tiling, c.passes, size)
                if key not in costs:
                    costs[key] = cost(c, size)
                row["passes_per_image"], row["gflop_per_image"] = costs[key]
                torch.set_num_threads(c.threads)
                det.predict_many([_color(images[size][0], det)], threshold=_threshold(det))  # warm-up, compilation
            plan.append((det, [_color(im, det) for im in images[size]] if det is not None else None, row))
    for _ in range(args.rounds):
        for det, batch, row in plan:
            if det is not None:
                torch.set_num_threads(row["threads"])
                row["seconds"].append(timed(lambda: det.predict_many(batch, threshold=_threshold(det))))
    rows = [row for _, _, row in plan]
    if args.auc_data:
        done: dict = {}
        for c, det in detectors.items():
            key = (c.run, c.engine, c.precision, c.tiling, c.passes)
            if det is not None and key not in done:
                torch.set_num_threads(c.threads)
                done[key] = auc(det, args.auc_data)
        for row in rows:
            row.update(done.get((row["run"], row["engine"], row["precision"], row["tiling"], row["passes"]), {}))
    return rows


def _threshold(det) -> float:
    return det.threshold if det.threshold is not None else 0.5


def _color(image: np.ndarray, det) -> np.ndarray:
    """A gray test image as the run reads images (three equal channels for a color run)."""
    return np.repeat(image[..., None], 3, 2) if det.settings.preprocess.color and image.ndim == 2 else image


def summarise(rows: list[dict], peaks: dict[int, float]) -> None:
    """Medians and rates added to each measured row."""
    for row in rows:
        if not row["seconds"]:
            continue
        ms = 1000 * statistics.median(row["seconds"]) / row["n"]
        row.update(ms_per_image=ms, images_per_s=1000 / ms, ms_per_pass=ms / row["passes_per_image"],
                   share_of_peak=row["gflop_per_image"] / (ms / 1000) / peaks[row["threads"]])


def table(rows: list[dict], peaks: dict[int, float], command: str, machine: dict) -> str:
    """The markdown report."""
    auc_cols = any("pixel_roc_auc" in r for r in rows)
    head = ["model", "engine", "precision", "threads", "tiling", "test-time passes", "torch options", "image (W x H)",
            "ms / image", "images / s", "passes / image", "ms / pass", "GFLOP / image", "share of matmul peak"]
    head += ["pixel AUC", "image AUC"] if auc_cols else []
    lines = [f"Command: `{command}`", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; torch {machine['torch']}, onnxruntime "
             f"{machine['onnxruntime']}; {machine['date']}, commit {machine['commit']}.", "",
             "float32 2048 x 2048 matmul peak: " + ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in peaks.items()),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["engine"], r["precision"], str(r["threads"]), r["tiling"], r["passes"] or "run's",
                 r["torch_options"], r["size"]]
        if not r["seconds"]:
            cells += [f"not measured: {r['skipped']}"] + [""] * (len(head) - len(cells) - 1)
        else:
            cells += [f"{r['ms_per_image']:.1f}", f"{r['images_per_s']:.2f}", str(r["passes_per_image"]),
                      f"{r['ms_per_pass']:.2f}",
                      f"{r['gflop_per_image']:.2f}", f"{r['share_of_peak']:.0%}"]
            if auc_cols:
                cells += [f"{r.get('pixel_roc_auc', float('nan')):.4f}", f"{r.get('image_roc_auc', float('nan')):.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "date": time.strftime("%Y-%m-%d"), "commit": commit or "unknown", "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", metavar="RUN", help="run folders (default: tiny runs of every model)")
    ap.add_argument("--n", type=int, default=8, help="images per size and configuration (default 8)")
    ap.add_argument("--sizes", default="256x256,512x512,1024x700", help="image sizes W x H, comma-separated")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over them (default 3)")
    ap.add_argument("--engines", default="torch,onnx")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--tilings", default="window,whole")
    ap.add_argument("--torch-options", default="none", help="none,channels_last,compile (torch engine)")
    ap.add_argument("--passes", nargs="*", default=[""],
                    help='test-time settings of models that have them, one configuration each: "" (the run\'s), '
                         '"cell_sizes=8", "cell_sizes=8;mask_sets=2", ...')
    ap.add_argument("--auc-data", default=None, metavar="ROOT", help="also the AUCs on this dataset's test images")
    ap.add_argument("--out", default="docs/results/speed", help="folder for bench_inference.md / .json")
    args = ap.parse_args()
    for name in ("engines", "precisions", "tilings", "torch_options"):
        setattr(args, name, [v for v in getattr(args, name).split(",") if v])
    args.threads = [int(t) for t in args.threads.split(",")]
    command = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        runs = [Path(r) for r in args.runs] or train_tiny_runs(Path(tmp))
        onnx_files = {str(r): exports(r, Path(tmp) / "onnx" / f"{i}-{r.name}", args.precisions)
                      for i, r in enumerate(runs)} if "onnx" in args.engines else {}
        configs = configurations(runs, args)
        peaks = {t: matmul_peak(t) for t in args.threads}
        rows = measure(configs, onnx_files, args)
        peaks = {t: max(peaks[t], matmul_peak(t)) for t in args.threads}  # before and after: the better
    summarise(rows, peaks)
    machine = machine_info()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_inference.json").write_text(json.dumps({"command": command, "machine": machine, "peaks": peaks,
                                                          "rows": rows}, indent=2) + "\n")
    report = table(rows, peaks, command, machine)
    (out / "bench_inference.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
