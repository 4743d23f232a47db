"""Export a trained run for inference without PyTorch: an ONNX graph plus its settings.

``ssimae export RUN --format onnx --out DIR`` writes

* ``DIR/model.onnx``: the model's per-patch inference (:meth:`ssimae.models.Model.export_module`)
  as one graph, input ``patches`` (B, 1, 128, 128) float32 with a dynamic batch, output
  ``outputs`` (B, C, 128, 128), C the model's named outputs. The VAE's graph takes its
  latent noise as a second input ``noise`` (N, B, d, 1, 1), so the runtime feeds the same
  draws as the torch path (:mod:`ssimae.runtime` reproduces torch's CPU generator) and
  the N-sample reconstruction probability stays reproducible.
* ``DIR/ssimae.json``: everything inference needs besides the graph (:func:`export_info`):
  the model kind, latent size and hyperparameters, the output names, the noise, and the
  run's inference settings (preprocessing/resize, stride, residual and its SSIM options,
  opening diameter, smoothing, validation statistics, threshold and its rule), plus the
  ssimae version. The same JSON is stored in the ONNX file's metadata under ``ssimae``
  (:data:`METADATA_KEY`), which is what the runtime reads.

The export uses torch's TorchScript-based ONNX exporter (``dynamo=False``: no extra
packages) at opset :data:`OPSET`, and the ``onnx`` package for the metadata
(``pip install 'ssimae[onnx]'``).
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from ssimae.runs.checkpoint import Run, load_run
from ssimae.inference.detector import Detector
from ssimae.io.files import atomic_write_bytes, atomic_write_text
from ssimae.inference.onnx_detector import FORMAT, INFO_FILE, METADATA_KEY, MODEL_FILE, NOISE_GENERATOR, VERSION, require
from ssimae.core.window import PATCH_SIZE

OPSET = 17


def export_info(det: Detector, noise_shape: tuple[int, ...] | None, source: str) -> dict:
    """The JSON-ready description of an exported model (the contents of ``ssimae.json``)."""
    from ssimae._version import __version__

    s = det.settings
    noise = None if noise_shape is None else {
        "samples": det.params.samples, "shape": list(noise_shape), "seed": s.seed, "generator": NOISE_GENERATOR}
    return {
        "format": FORMAT, "version": VERSION, "ssimae_version": __version__, "torch_version": torch.__version__,
        "model": det.model.name, "title": det.model.title, "latent_dim": getattr(det.network, "latent_dim", None),
        "params": asdict(det.params), "outputs": list(det.model.outputs), "residual": det.default_residual,
        "patch_size": PATCH_SIZE, "input": "patches", "output": "outputs", "noise": noise,
        "opset": OPSET, "source": source, "inference": asdict(s),
    }


def export_onnx(run: str | os.PathLike | Run, out: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``out/model.onnx`` and ``out/ssimae.json`` for a run folder or checkpoint (or a
    :class:`Run` already read); returns the ONNX file's path. The graph is checked with ``onnx.checker``."""
    onnx = require("onnx", "the ONNX export")
    run = load_run(run)
    det = Detector.load(run, "cpu")
    module, noise_shape = det.model.export_module(det.network, det.params)
    module = module.eval()
    patches = torch.rand(2, det.settings.preprocess.channels, PATCH_SIZE, PATCH_SIZE)
    args, names, axes = (patches,), ["patches"], {"patches": {0: "batch"}, "outputs": {0: "batch"}}
    if noise_shape is not None:
        args += (torch.randn(det.params.samples, 2, *noise_shape),)
        names.append("noise")
        axes["noise"] = {0: "samples", 1: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, buf, input_names=names, output_names=["outputs"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    info = export_info(det, noise_shape, os.fspath(run.path))
    info["opset"] = opset
    text = json.dumps(info, indent=2, sort_keys=True)
    graph.metadata_props.add(key=METADATA_KEY, value=text)
    for key in ("model", "residual", "ssimae_version"):
        graph.metadata_props.add(key=f"{METADATA_KEY}.{key}", value=str(info[key]))
    graph.metadata_props.add(key=f"{METADATA_KEY}.threshold", value=repr(det.threshold))
    graph.producer_name, graph.doc_string = "ssimae", f"{det.model.title} exported by ssimae {info['ssimae_version']}"
    onnx.checker.check_model(graph)
    out = Path(out)
    atomic_write_bytes(out / MODEL_FILE, graph.SerializeToString())
    atomic_write_text(out / INFO_FILE, text + "\n")
    return out / MODEL_FILE

