"""int8 quantizer settings against each other on one run: the ms per image of its ONNX export
in float32 and in int8 quantized each way, interleaved in one run (one thread).

    python benchmarks/int8_variants.py RUN [--tilings whole,window] [--images 3] [--rounds 3]
        [--variants fp32,s8-keep,u8-keep,u8-rewrite-all,u8]

Variants: ``fp32`` (no quantization); ``s8-keep`` (int8 activations, transposed convolutions
kept: the export's rule before 2026-12-03); ``u8-keep`` (uint8 activations, kept);
``u8-rewrite-all`` (uint8, every transposed convolution rewritten as a sub-pixel convolution,
4 x 4 kernels included); ``u8`` (the export's rule: uint8, only kernels equal to the stride
rewritten). Each scores ``--images`` uniform-noise 256 x 256 images through ``predict_many``;
medians over ``--rounds``. No AUC: ``benchmarks/engine_auc.py`` gives the export's.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = {  # name: (activation type, rewrite: None = keep, False = every one, True = the export's rule)
    "fp32": None,
    "s8-keep": ("QInt8", None),
    "u8-keep": ("QUInt8", None),
    "u8-rewrite-all": ("QUInt8", False),
    "u8": ("QUInt8", True),
}


@contextlib.contextmanager
def quantizer(activation: str, rewrite):
    """ssimae's int8 export with the activation type and rewrite rule of a variant."""
    import onnxruntime.quantization as oq

    import ssimae.inference.export as ex

    original_quantize, original_rewrite = oq.quantize_static, ex.subpixel_conv_transposes

    def quantize(*a, **k):
        return original_quantize(*a, **{**k, "activation_type": getattr(oq.QuantType, activation)})

    oq.quantize_static = quantize
    if rewrite is None:
        ex.subpixel_conv_transposes = lambda graph, same_work=True: (graph, 0)
    elif rewrite is False:
        ex.subpixel_conv_transposes = lambda graph, same_work=True: original_rewrite(graph, same_work=False)
    try:
        yield
    finally:
        oq.quantize_static, ex.subpixel_conv_transposes = original_quantize, original_rewrite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--tilings", default="whole,window")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    from ssimae.commands.export import export
    from ssimae.runtime import OnnxDetector

    rng = np.random.default_rng(0)
    images = [rng.random((256, 256), dtype=np.float32) for _ in range(args.images)]
    detectors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            out = Path(tmp) / name
            shutil.rmtree(out, ignore_errors=True)
            if VARIANTS[name] is None:
                export(args.run, out)
            else:
                with quantizer(*VARIANTS[name]):
                    export(args.run, out, int8=True)
            for tiling in args.tilings.split(","):
                try:
                    det = OnnxDetector.load(out, 1).with_settings(tiling=tiling)
                    det.predict_many(images[:1], threshold=0.5)  # warm-up
                except Exception as e:  # e.g. whole-image tiling of a model that is not fully convolutional
                    print(f"{name} {tiling}: skipped ({e})")
                    continue
                detectors[(name, tiling)] = det
        times: dict = {k: [] for k in detectors}
        for _ in range(args.rounds):
            for key, det in detectors.items():
                t0 = time.perf_counter()
                det.predict_many(images, threshold=0.5)
                times[key].append((time.perf_counter() - t0) / len(images) * 1e3)
    print(f"python benchmarks/int8_variants.py {args.run} --tilings {args.tilings} --images {args.images} "
          f"--rounds {args.rounds} --variants {args.variants}")
    for (name, tiling), t in times.items():
        print(f"{name:16s} {tiling:7s} {statistics.median(t):8.1f} ms / image")


if __name__ == "__main__":
    main()
