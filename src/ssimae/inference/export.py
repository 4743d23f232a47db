"""Export a trained run for inference without PyTorch: an ONNX graph plus its settings.

``ssimae export RUN --format onnx --out DIR`` writes

* ``DIR/model.onnx``: the model's per-patch inference (:meth:`ssimae.models.Model.export_module`)
  as one graph, input ``patches`` (B, 1, 128, 128) float32 with a dynamic batch, output
  ``outputs`` (B, C, 128, 128), C the model's named outputs. The VAE's graph takes its
  latent noise as a second input ``noise`` (N, B, d, 1, 1), so the runtime feeds the same
  draws as the torch path (:mod:`ssimae.runtime` reproduces torch's CPU generator) and
  the N-sample reconstruction probability stays reproducible.
  A fully convolutional model's graph (:meth:`ssimae.models.Model.geometry`) takes any
  height and width (multiples of its stride), for whole-image inference; a model that hides
  cells (``inpaint``) takes its masks as an input ``masks`` (P, 1, h, w): the runtime feeds
  the sliding window's fixed 128 x 128 masks (stored as text) or a whole image's grid masks
  (:mod:`ssimae.core.masks`), so both give the torch path's maps.
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

import contextlib
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from ssimae.errors import SsimaeError, one_line
from ssimae.runs.checkpoint import Run, load_run
from ssimae.runs.inference_settings import NO_THRESHOLD
from ssimae.inference.detector import Detector
from ssimae.io.files import atomic_write_bytes, atomic_write_text
from ssimae.inference.onnx_detector import (FORMAT, FP32_FILE, INFO_FILE, METADATA_KEY, MODEL_FILE, NOISE_GENERATOR,
                                            VERSION, require, window_masks)
from ssimae.core.window import PATCH_SIZE

OPSET = 17


def export_info(det: Detector, params, noise_shape: tuple[int, ...] | None, source: str) -> dict:
    """The JSON-ready description of an exported model (the contents of ``ssimae.json``);
    ``params``: the model's hyperparameters with the test-time changes applied."""
    from ssimae._version import __version__

    s = det.settings
    noise = None if noise_shape is None else {
        "samples": params.samples, "shape": list(noise_shape), "seed": s.seed, "generator": NOISE_GENERATOR}
    geometry = det.model.geometry(params)
    return {
        "format": FORMAT, "version": VERSION, "ssimae_version": __version__, "torch_version": torch.__version__,
        "model": det.model.name, "title": det.model.title, "latent_dim": getattr(det.network, "latent_dim", None),
        "params": asdict(params), "outputs": list(det.model.outputs), "residual": det.default_residual,
        "patch_size": PATCH_SIZE, "input": "patches", "output": "outputs", "noise": noise,
        "geometry": None if geometry is None else asdict(geometry), "masks": det.model.pass_masks(params),
        "opset": OPSET, "source": source, "inference": asdict(s),
    }


def graph_inputs(det: Detector, params, noise_shape) -> tuple[tuple, list[str], dict]:
    """(example inputs, input names, dynamic axes) of the export's graph: ``patches`` (batch;
    height and width too for a fully convolutional model), the VAE's ``noise``, and the
    ``masks`` (P, 1, h, w) of a model that hides cells (the 128 x 128 ones of the sliding
    window, or a whole image's grid masks)."""
    size = (det.settings.preprocess.channels, PATCH_SIZE, PATCH_SIZE)
    args, names = (torch.rand(2, *size),), ["patches"]
    spatial = {2: "height", 3: "width"} if det.model.geometry(params) is not None else {}
    axes = {"patches": {0: "batch", **spatial}, "outputs": {0: "batch", **spatial}}
    if noise_shape is not None:
        args += (torch.randn(params.samples, 2, *noise_shape),)
        names.append("noise")
        axes["noise"] = {0: "samples", 1: "batch"}
    masks = det.model.pass_masks(params)
    if masks is not None:
        args += (torch.from_numpy(window_masks(masks)),)
        names.append("masks")
        axes["masks"] = {0: "passes", **spatial}
    return args, names, axes


def exportable(run: str | os.PathLike | Run) -> Run:
    """The run read (:func:`ssimae.runs.checkpoint.load_run`: refused while training);
    SsimaeError when it has no threshold (an export is for scoring, and scoring needs one)."""
    run = load_run(run)
    if run.settings.inference.threshold is None:
        raise SsimaeError(f"{NO_THRESHOLD}: finish it (ssimae train --resume) or choose one (ssimae calibrate) "
                          "before exporting", run.path)
    return run


def export_onnx(run: str | os.PathLike | Run, out: str | os.PathLike, opset: int = OPSET,
                int8_images: Sequence[str | os.PathLike] | None = None) -> Path:
    """Write ``out/model.onnx`` and ``out/ssimae.json`` for a run folder or checkpoint (or a
    :class:`ssimae.runs.checkpoint.Run`); returns the ONNX file's path. The graph is checked
    with ``onnx.checker``. A run without a threshold is refused (:func:`exportable`).
    ``int8_images``: defect-free image files; the graph is then quantized to int8
    (:func:`quantize_int8`, calibrated on their patches) into ``model.onnx``, the float32
    graph kept beside it as ``model-fp32.onnx``; SsimaeError when the model's operators do
    not quantize."""
    onnx = require("onnx", "the ONNX export")
    run = exportable(run)
    det = Detector.load(run, "cpu")
    params = det.model.with_test_params(det.params, det.settings.model_params)
    module, noise_shape = det.model.export_module(det.network, params)
    module = module.eval()
    args, names, axes = graph_inputs(det, params, noise_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, buf, input_names=names, output_names=["outputs"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    info = export_info(det, params, noise_shape, os.fspath(run.path))
    info["opset"] = opset
    graph = with_metadata(graph, info)
    onnx.checker.check_model(graph)
    out = Path(out)
    if int8_images is not None:
        feeds = calibration_feeds(det, params, noise_shape, int8_images)
        quantized, report = quantize_int8(graph, feeds, det.model.name)
        info["quantization"] = {**report, "fp32_model": FP32_FILE, "calibration_images": len(int8_images)}
        atomic_write_bytes(out / FP32_FILE, graph.SerializeToString())
        graph = with_metadata(quantized, info)
    text = json.dumps(info, indent=2, sort_keys=True)
    atomic_write_bytes(out / MODEL_FILE, graph.SerializeToString())
    atomic_write_text(out / INFO_FILE, text + "\n")
    return out / MODEL_FILE


def with_metadata(graph, info: dict):
    """``graph`` (an onnx ModelProto) with ``info`` as its ssimae metadata (replacing any)."""
    text = json.dumps(info, indent=2, sort_keys=True)
    del graph.metadata_props[:]
    graph.metadata_props.add(key=METADATA_KEY, value=text)
    for key in ("model", "residual", "ssimae_version"):
        graph.metadata_props.add(key=f"{METADATA_KEY}.{key}", value=str(info[key]))
    graph.metadata_props.add(key=f"{METADATA_KEY}.threshold", value=repr(info["inference"]["threshold"]))
    graph.producer_name = "ssimae"
    graph.doc_string = f"{info['title']} exported by ssimae {info['ssimae_version']}" + (
        " (int8)" if "quantization" in info else "")
    return graph


# --- int8 ---------------------------------------------------------------------------------------

MAX_CALIBRATION_PATCHES = 256  # patches that calibrate the int8 ranges, spread over the images
CALIBRATION_BATCH = 16
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # whose int8 kernels are the speed-up


def calibration_feeds(det: Detector, params, noise_shape, images: Sequence[str | os.PathLike]) -> list[dict]:
    """The graph's inputs for int8 calibration: sliding-window patches (the run's
    preprocessing, padding and stride) of defect-free ``images``, at most
    :data:`MAX_CALIBRATION_PATCHES` taken evenly, in batches of :data:`CALIBRATION_BATCH`,
    with the window's masks of a model that hides cells and seeded noise for a sampling one."""
    import numpy as np

    from ssimae.core.window import patch_starts
    from ssimae.inference.scorer import prepare

    s = det.settings
    patches = []
    for path in images:
        padded = prepare(s.preprocess.read(path), s)[1]
        padded = padded if padded.ndim == 3 else padded[None]
        patches += [padded[:, r:r + PATCH_SIZE, c:c + PATCH_SIZE] for r in patch_starts(padded.shape[1], stride=s.stride)
                    for c in patch_starts(padded.shape[2], stride=s.stride)]
    keep = np.unique(np.linspace(0, len(patches) - 1, min(len(patches), MAX_CALIBRATION_PATCHES)).round().astype(int))
    chosen = np.stack([patches[i] for i in keep]).astype(np.float32)
    if "anomaly" in det.model.outputs and chosen.shape[1] == 1:
        chosen = with_synthetic_anomalies(chosen, params.anomalies, s.seed)
    masks = det.model.pass_masks(params)
    gen = torch.Generator().manual_seed(s.seed)
    feeds = []
    for i in range(0, len(chosen), CALIBRATION_BATCH):
        feed = {"patches": chosen[i:i + CALIBRATION_BATCH]}
        if noise_shape is not None:
            feed["noise"] = torch.randn((params.samples, len(feed["patches"]), *noise_shape), generator=gen).numpy()
        if masks is not None:
            feed["masks"] = window_masks(masks)
        feeds.append(feed)
    return feeds


def with_synthetic_anomalies(patches, kind: str, seed: int):
    """(N, 1, H, W) float32 calibration patches with the model's own synthetic anomalies
    (:func:`ssimae.data.synthetic.make_anomaly`, generator ``kind``) in every other one: a
    segmentation head's logits on defect-free patches span a small range, and an int8 range
    calibrated on them alone clips every anomaly to the same value (measured: DRAEM's demo
    pixel AUC 0.894 -> 0.859); with anomalies in the calibration the range covers them."""
    import numpy as np

    from ssimae.data.synthetic import make_anomaly, source_textures

    rng, sources = np.random.default_rng(seed), source_textures()
    out = patches.copy()
    for i in range(0, len(out), 2):
        donor = patches[(i + 1) % len(patches), 0]
        out[i, 0] = make_anomaly(patches[i, 0], donor, rng, sources, kind, p_anomaly=1.0)[0]
    return out


def subpixel_conv_transposes(graph, same_work: bool = True):
    """(graph, how many rewritten): every ConvTranspose whose output is its input's size times
    its stride (kernel - 2 * pad == stride, square, one group, no dilation or output padding;
    with ``same_work``, only those whose kernel equals the stride, whose rewrite adds no
    multiply-adds)
    replaced by the equivalent Conv to stride^2 x C_out channels followed by DepthToSpace
    ("CRD", PyTorch's pixel shuffle): the sub-pixel convolution of Shi et al. (CVPR 2016),
    whose int8 kernel onnxruntime has (it has none for ConvTranspose on the CPU).

    Derivation (one axis, stride s, kernel k, pad p): y[s m + a] = sum_j x[m - j] w[s j + a + p]
    over the j with 0 <= s j + a + p < k, so output phase a is a correlation of x with the taps
    v_a[u] = w[a + p - s u], u = -j; the phases' taps u share one kernel of size
    max(u) - min(u) + 1 padded by -min(u) before and max(u) after (zeros where a phase has no
    tap). Kernel 2, stride 2 (the U-Nets): 1 x 1, the same multiply-adds; kernel 4, stride 2,
    pad 1 (Table 1's decoder): a 3 x 3 kernel, 2.25x the multiply-adds, and no faster in int8
    on the SSIM-AE (docs/results/speed), so ``same_work`` leaves it. Same outputs up to float32
    summation order. The graph's other nodes are kept."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.graph.initializer}
    nodes, done = [], 0
    for n in graph.graph.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k = list(a.get("kernel_shape", []))
        s, p = list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0]))
        if (n.op_type != "ConvTranspose" or n.input[1] not in inits or len(k) != 2 or a.get("group", 1) != 1
                or any(d != 1 for d in a.get("dilations", [1, 1])) or any(a.get("output_padding", [0, 0]))
                or "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or len(set(k)) != 1 or len(set(s)) != 1 or len(set(p)) != 1 or k[0] - 2 * p[0] != s[0]
                or (same_work and k[0] != s[0])):
            nodes.append(n)
            continue
        k, s, p = k[0], s[0], p[0]
        w = numpy_helper.to_array(inits[n.input[1]])  # (C_in, C_out, k, k)
        taps = {ph: [-j for j in range(-k, k + 1) if 0 <= s * j + ph + p < k] for ph in range(s)}
        lo, hi = -min(min(t) for t in taps.values()), max(max(t) for t in taps.values())
        size = lo + hi + 1
        c_in, c_out = w.shape[:2]
        v = np.zeros((c_out, s, s, c_in, size, size), w.dtype)
        for ay in range(s):
            for ax in range(s):
                for uy in taps[ay]:
                    for ux in taps[ax]:
                        v[:, ay, ax, :, uy + lo, ux + lo] = w[:, :, ay + p - s * uy, ax + p - s * ux].T
        name = n.name or n.output[0]
        weight = numpy_helper.from_array(v.reshape(c_out * s * s, c_in, size, size), f"{name}_subpixel_weight")
        graph.graph.initializer.append(weight)
        conv_inputs = [n.input[0], weight.name]
        if len(n.input) > 2 and n.input[2]:
            bias = numpy_helper.from_array(np.repeat(numpy_helper.to_array(inits[n.input[2]]), s * s),
                                           f"{name}_subpixel_bias")
            graph.graph.initializer.append(bias)
            conv_inputs.append(bias.name)
        mid = f"{name}_subpixel_output"
        nodes.append(helper.make_node("Conv", conv_inputs, [mid], name=f"{name}_subpixel",
                                      kernel_shape=[size, size], pads=[lo, lo, hi, hi], strides=[1, 1]))
        nodes.append(helper.make_node("DepthToSpace", [mid], list(n.output), name=f"{name}_depth_to_space",
                                      blocksize=s, mode="CRD"))
        done += 1
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    unused = [t for t in graph.graph.initializer if t.name not in used]
    for t in unused:  # the transposed convolutions' own weights and biases
        graph.graph.initializer.remove(t)
    return graph, done


def quantize_int8(graph, feeds: list[dict], model: str):
    """(int8 ModelProto, what was done) of a float32 graph: its 2 x 2 transposed convolutions
    rewritten as sub-pixel convolutions (:func:`subpixel_conv_transposes`), then onnxruntime's
    static quantization in the QDQ format (uint8 activations and per-channel int8 weights, the
    pair whose kernels onnxruntime's CPU provider fuses for every convolution, concatenation
    and pooling of these networks; min-max ranges calibrated on ``feeds``). SsimaeError (one
    line) when quantization fails or leaves none of the operators of :data:`QUANTIZED_OPS`
    quantized."""
    import tempfile

    onnx = require("onnx", "the int8 export")
    require("onnxruntime", "the int8 export")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    # in the temporary folder: onnxruntime's symbolic shape inference writes
    # "sym_shape_infer_temp.onnx" into the working directory when it cannot infer every shape
    with tempfile.TemporaryDirectory() as tmp, _working_directory(tmp):
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        prepared = Path(tmp) / "prepared.onnx"
        rewritten, subpixel = subpixel_conv_transposes(onnx.load_from_string(graph.SerializeToString()))
        source.write_bytes(rewritten.SerializeToString())
        try:  # onnxruntime's pre-processing: shape inference and graph optimisation before quantizing
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
            quantize_static(prepared, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            quantized = onnx.load(target)
        except Exception as e:  # onnxruntime raises its own types
            raise SsimaeError(f"the {model} model did not quantize to int8 ({one_line(e, 160)})") from None
    ops = count_quantized(quantized)
    if not ops:
        raise SsimaeError(f"the {model} model's operators do not quantize to int8 (none of "
                          f"{', '.join(QUANTIZED_OPS)} got int8 inputs); export it without --int8")
    return quantized, {"format": "QDQ", "activations": "uint8", "weights": "int8, per channel",
                       "subpixel_conv_transposes": subpixel,
                       "calibration": "min-max", "calibration_patches": sum(len(f["patches"]) for f in feeds),
                       "quantized_ops": ops}


@contextlib.contextmanager
def _working_directory(path):
    """``contextlib.chdir`` (Python 3.11) for Python 3.10."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def count_quantized(graph) -> dict[str, int]:
    """{op type: how many} of the :data:`QUANTIZED_OPS` nodes whose inputs are all dequantized
    int8 tensors (the QDQ pattern onnxruntime runs with int8 kernels)."""
    dequantized = {o for n in graph.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for n in graph.graph.node:
        inputs = [i for i in n.input if i]
        if n.op_type in QUANTIZED_OPS and inputs[:2] and all(i in dequantized for i in inputs[:2]):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
