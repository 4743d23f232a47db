"""``python -m ssimae.runtime EXPORT INPUT... --out DIR``: the command line of the torch-free
runtime. Parsing only; the work is :func:`ssimae.commands.predict.predict` with the ONNX engine,
which imports no torch."""
from __future__ import annotations

import argparse
import sys

from ssimae.commands.predict import predict
from ssimae.errors import SsimaeError, printable


def main(argv: list[str] | None = None) -> int:
    """``python -m ssimae.runtime EXPORT INPUT... --out DIR``: ``ssimae predict --engine onnx``
    for a machine without torch (the ``ssimae`` command imports torch for its other
    subcommands). Bad input: one line ``ssimae: error: ...`` and exit status 2."""
    p = argparse.ArgumentParser(prog="python -m ssimae.runtime", description=(
        "Heat map, defect mask and overlay for images, with an exported model (ssimae export) run by "
        "onnxruntime; imports no torch."))
    p.add_argument("export", metavar="EXPORT", help="folder written by `ssimae export` (or its model.onnx)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--threshold", type=float, default=None, help="residual threshold (default: the stored one)")
    p.add_argument("--save-raw", action="store_true", help="also write the float32 residual map as .npy")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        predict(args.export, args.inputs, args.out, threshold=args.threshold, save_raw=args.save_raw,
                progress=not args.quiet, engine="onnx")
    except SsimaeError as e:
        print(f"ssimae: error: {printable(str(e))}", file=sys.stderr)
        return 2
    return 0
