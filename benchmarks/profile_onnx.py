"""Where an exported model's time goes, operator by operator: onnxruntime's own profiler over
the whole scoring of ``--n`` images, fp32 against int8 of the same run.

    python benchmarks/profile_onnx.py RUN [RUN ...] [--n 4] [--size 256x256] [--threads 1]
        [--tilings window,whole] [--out docs/results/speed/profile]

Each run is exported twice (``ssimae export`` and ``ssimae export --int8``, the int8 graph
calibrated on the run's validation images); each export scores ``--n`` uniform-noise images of
``--size`` (W x H) through ``predict_many`` once to warm up, then once under onnxruntime's
profiler (``SessionOptions.enable_profiling``; the graph's nodes are timed by onnxruntime, so
Python's own time is the rest). The table gives, per run, tiling and precision: ms per image
in the graph, and each operator type's ms per image, share and node count, largest first;
QuantizeLinear and DequantizeLinear are the int8 graph's conversions. Ratios, not absolute
times, are comparable between machines: run it on a quiet machine.

Writes OUT/profile_onnx.md (the table and the command) and OUT/profile_onnx.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import _color, _threshold, exports, machine_info, parse_size  # noqa: E402


def profiled_detector(onnx_file: Path, threads: int, prefix: Path):
    """An OnnxDetector over ``onnx_file`` whose session profiles every node (one intra-op
    pool of ``threads``); the profile is written under ``prefix`` when it ends."""
    import onnxruntime as ort

    from ssimae.inference.onnx_detector import METADATA_KEY
    from ssimae.runtime import OnnxDetector

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, str(prefix)
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    info = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    return OnnxDetector(session, info, onnx_file)


def op_times(profile: Path) -> dict[str, dict]:
    """{op type: {"us": total microseconds, "nodes": distinct nodes}} of one onnxruntime profile
    (its "Node" events of kind kernel time, ``args.op_name``)."""
    events = json.loads(profile.read_text())
    out: dict[str, dict] = defaultdict(lambda: {"us": 0, "nodes": set()})
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            out[op]["us"] += int(e.get("dur", 0))
            out[op]["nodes"].add(e["name"])
    return {op: {"us": v["us"], "nodes": len(v["nodes"])} for op, v in out.items()}


def profile_one(onnx_file: Path, tiling: str, images: list[np.ndarray], threads: int, work: Path) -> dict:
    det = profiled_detector(onnx_file, threads, work / f"{onnx_file.parent.name}-{tiling}")
    det = det.with_settings(tiling=tiling)
    batch = [_color(im, det) for im in images]
    det.predict_many(batch[:1], threshold=_threshold(det))  # warm-up (also profiled, subtracted below)
    warm = op_times(Path(det.session.end_profiling()))
    det = profiled_detector(onnx_file, threads, work / f"{onnx_file.parent.name}-{tiling}-b")
    det = det.with_settings(tiling=tiling)
    det.predict_many(batch[:1], threshold=_threshold(det))
    det.predict_many(batch, threshold=_threshold(det))
    both = op_times(Path(det.session.end_profiling()))
    ops = {op: {"us": both[op]["us"] - warm.get(op, {"us": 0})["us"], "nodes": both[op]["nodes"]} for op in both}
    return {"ops": ops, "ms_per_image": sum(v["us"] for v in ops.values()) / 1e3 / len(images)}


def table(rows: list[dict], command: str, machine: dict, top: int) -> str:
    lines = [f"`{command}`", "", f"Machine: {machine}", ""]
    for r in rows:
        total = r["ms_per_image"]
        lines += [f"### {r['run']}: {r['precision']}, {r['tiling']}, {r['size']}, {r['threads']} thread(s): "
                  f"{total:.1f} ms per image in the graph", "",
                  "| operator | ms per image | share | nodes |", "|---|---|---|---|"]
        ranked = sorted(r["ops"].items(), key=lambda kv: -kv[1]["us"])
        for op, v in ranked[:top]:
            ms = v["us"] / 1e3 / r["n"]
            lines.append(f"| {op} | {ms:.2f} | {ms / total:.1%} | {v['nodes']} |")
        rest = sum(v["us"] for _, v in ranked[top:]) / 1e3 / r["n"]
        if rest:
            lines.append(f"| (the other {len(ranked) - top}) | {rest:.2f} | {rest / total:.1%} | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--size", default="256x256", help="W x H")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tilings", default="window,whole")
    ap.add_argument("--top", type=int, default=12, help="operators listed per table (the rest summed)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from ssimae.models import get_model
    from ssimae.runs.checkpoint import load_run

    size = parse_size(args.size)
    images = [np.random.default_rng(i).random(size, dtype=np.float32) for i in range(args.n)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            found = exports(run, Path(tmp) / f"{i}-{run.name}", ["fp32", "int8"])
            loaded = load_run(run)
            convolutional = get_model(loaded.settings.train.model).geometry(loaded.settings.train.params) is not None
            for tiling in args.tilings.split(","):
                if tiling == "whole" and not convolutional:
                    continue
                for precision, path in found.items():
                    if not isinstance(path, Path):
                        print(f"{run} {precision}: not exported ({path})", file=sys.stderr)
                        continue
                    r = profile_one(path, tiling, images, args.threads, Path(tmp))
                    rows.append({"run": str(run), "model": loaded.settings.train.model, "precision": precision,
                                 "tiling": tiling, "size": args.size, "threads": args.threads, "n": args.n, **r})
                    print(f"{run} {precision} {tiling}: {r['ms_per_image']:.1f} ms per image in the graph",
                          flush=True)
    command = "python benchmarks/profile_onnx.py " + " ".join(sys.argv[1:])
    from ssimae.io.files import atomic_write_text
    from ssimae.io.folders import RunLock

    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows, command, machine_info(), args.top)
    with RunLock(args.out, "benchmarks/profile_onnx.py"):  # one writer of the folder at a time
        atomic_write_text(args.out / "profile_onnx.md", text + "\n")
        atomic_write_text(args.out / "profile_onnx.json", json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
