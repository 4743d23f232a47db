"""Inference without PyTorch: an exported model (:mod:`ssimae.inference.export`) run by onnxruntime.

    from ssimae.runtime import OnnxDetector
    det = OnnxDetector.load("export-dir")     # folder with model.onnx, or the .onnx file
    residual = det.residual_map(image)        # image: (H, W) float in [0, 1] -> (H, W)
    mask = det.segment(image)                 # (H, W) bool, at the stored threshold

This module and everything it imports use numpy, scipy, scikit-image and onnxruntime
only, never torch (a test runs it in a process where importing torch fails). It shares
the torch path's steps rather than repeating them: preprocessing and padding, cropping,
smoothing and resizing back (:mod:`ssimae.inference.scorer`), the sliding window
(:mod:`ssimae.core.window`), the residual maps (:mod:`ssimae.core.residual`; SSIM through
:func:`ssimae.core.ssim.ssim_map_numpy`) and the threshold with the opening
(:mod:`ssimae.core.morphology`). Only the network runs in onnxruntime.

The VAE's latent noise is drawn by :class:`TorchCpuNormal`, which reproduces
``torch.randn`` with a seeded CPU generator, so the runtime's VAE maps match the torch
path's on the CPU (on a GPU torch draws other numbers).

onnxruntime is an optional extra: ``pip install 'ssimae[onnx]'``.
"""
from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ssimae.core.masks import MAX_SETS, masks_from_text
from ssimae.core.residual import RESIDUALS, ResidualContext
from ssimae.core.window import PATCH_SIZE, Geometry
from ssimae.errors import SsimaeError, one_line
from ssimae.inference import scorer as scoring
from ssimae.runs.fields import from_dict
from ssimae.runs.inference_settings import InferenceSettings

FORMAT = "ssimae-onnx"
VERSION = 1
METADATA_KEY = "ssimae"  # the ONNX metadata entry holding the export's JSON
MODEL_FILE = "model.onnx"
FP32_FILE = "model-fp32.onnx"  # the float32 graph beside an int8 model.onnx (``ssimae export --int8``)
INFO_FILE = "ssimae.json"  # the same JSON, readable, beside the graph
NOISE_GENERATOR = "torch-cpu"  # noise drawn as torch.randn with a seeded CPU generator
# Inference settings the runtime reads (the export stores all of InferenceSettings).
SETTINGS_KEYS = ("preprocess", "stride", "residual", "ssim", "opening_diameter", "threshold", "batch_size", "seed",
                 "smooth", "residual_stats")


def require(module: str, what: str):
    """Import an optional dependency, or SsimaeError naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SsimaeError(f"{what} needs the {module} package: pip install 'ssimae[onnx]' "
                          f"(or pip install {module})") from None


class TorchCpuNormal:
    """Standard normal float32 draws equal (to float rounding, ~3e-7) to those of
    ``torch.randn(shape, generator=torch.Generator().manual_seed(seed))`` on the CPU,
    call after call, without torch.

    torch's CPU generator is the 32-bit Mersenne Twister seeded like numpy's legacy
    ``RandomState(seed)``; a float32 uniform is the low 24 bits of one output times 2^-24;
    ``randn`` of n >= 16 values fills n uniforms, then turns each block of 16 into 16
    normals by the Box-Muller transform (u1 = 1 - first 8, u2 = last 8; cos then sin), and
    when n is not a multiple of 16 redraws 16 uniforms for the last 16 values.
    """

    def __init__(self, seed: int):
        self._mt = np.random.RandomState(seed % 2**32)

    def _uniform(self, n: int) -> np.ndarray:
        bits = self._mt.randint(0, 2**32, size=n, dtype=np.uint64) & 0xFFFFFF
        return bits.astype(np.float32) * np.float32(2.0**-24)

    @staticmethod
    def _box_muller(u: np.ndarray) -> np.ndarray:
        """(k, 16) uniforms -> (k, 16) normals."""
        radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u[:, :8]))
        theta = np.float32(2.0 * math.pi) * u[:, 8:]
        return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1)

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next ``torch.randn(shape)`` of the generator (float32)."""
        n = math.prod(shape)
        if n < 16:
            raise SsimaeError(f"cannot reproduce torch's noise for fewer than 16 values (asked for {n})")
        out = self._uniform(n)
        full = n - n % 16
        out[:full] = self._box_muller(out[:full].reshape(-1, 16)).ravel()
        if full != n:
            out[n - 16:] = self._box_muller(self._uniform(16)[None])[0]
        return out.reshape(shape)


def open_export(path: str | os.PathLike, threads: int | None = None):
    """(onnxruntime session, the .onnx file, its ssimae JSON) of an export folder or .onnx
    file; SsimaeError for anything that is not an ssimae export of a supported version.
    ``threads``: onnxruntime's intra-op threads (None: its default, all cores)."""
    onnx_path = Path(path)
    if onnx_path.is_dir():
        onnx_path = onnx_path / MODEL_FILE
    if not onnx_path.is_file():
        raise SsimaeError(f"no such exported model (expected a folder with {MODEL_FILE}, or an .onnx file)", path)
    ort = require("onnxruntime", "the ONNX engine")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        info = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    except KeyError:
        raise SsimaeError("not an ssimae export (its ONNX metadata has no ssimae entry)", onnx_path) from None
    except Exception as e:  # onnxruntime raises its own types for unreadable files
        raise SsimaeError(f"not a readable ONNX model ({one_line(e)})", onnx_path) from None
    found = (info.get("format"), info.get("version")) if isinstance(info, dict) else (type(info).__name__, None)
    if found != (FORMAT, VERSION):
        raise SsimaeError(f"unsupported export (format {found[0]!r} version {found[1]!r}; "
                          f"expected {FORMAT} version {VERSION})", onnx_path)
    return session, onnx_path, info


def settings_from_info(inference: dict, where: Any = None) -> InferenceSettings:
    """The exported inference settings as :class:`InferenceSettings` (checked like a
    checkpoint's: keys, types and ranges); SsimaeError naming the export otherwise."""
    missing = [k for k in SETTINGS_KEYS if not isinstance(inference, dict) or k not in inference]
    if missing:
        raise SsimaeError(f"damaged export: its inference settings lack {', '.join(missing)}", where)
    try:
        return from_dict(InferenceSettings, inference, "exported inference settings")
    except SsimaeError as e:
        raise SsimaeError(f"damaged export ({e.problem})", where) from None


def window_masks(masks: dict) -> np.ndarray:
    """The sliding window's (P, 1, 128, 128) float32 masks of an export's ``masks`` entry."""
    return masks_from_text(masks["window"], masks["cell_sizes"], masks["sets"], PATCH_SIZE)


def check_masks(masks, bad) -> np.ndarray:
    """An export's ``masks`` entry checked (``bad(problem)``: the error to raise); returns
    :func:`window_masks`."""
    if not isinstance(masks, dict) or not {"cell_sizes", "sets", "seed", "window"} <= set(masks):
        raise bad("its masks must give cell_sizes, sets, seed and window")
    sizes, sets, seed = masks["cell_sizes"], masks["sets"], masks["seed"]
    if not (isinstance(sizes, list) and sizes and all(isinstance(k, int) and 1 <= k <= PATCH_SIZE for k in sizes)
            and isinstance(sets, int) and 2 <= sets <= MAX_SETS and isinstance(seed, int) and seed >= 0
            and isinstance(masks["window"], list) and all(isinstance(t, str) for t in masks["window"])):
        raise bad(f"its masks are not cell sizes in 1..{PATCH_SIZE}, 2..{MAX_SETS} sets and a seed")
    try:
        return window_masks(masks)
    except ValueError as e:
        raise bad(f"its masks: {e}") from None


def check_geometry(geometry, bad) -> Geometry | None:
    """An export's ``geometry`` entry (None: not fully convolutional) as a Geometry."""
    if geometry is None:
        return None
    if not (isinstance(geometry, dict) and set(geometry) == {"multiple", "reach"}
            and all(isinstance(v, int) and 1 <= v <= 4096 for v in geometry.values())):
        raise bad(f"its geometry must give multiple and reach (1..4096 px), got {geometry!r}")
    return Geometry(**geometry)


MAX_SAMPLES = 1000  # the VAE's latent samples per patch, a ceiling of an export's metadata


def check_export(info: dict, settings: InferenceSettings, session, where) -> None:
    """SsimaeError ("damaged export", one line) unless the export's metadata describes its
    graph: known residual computable from the named outputs, the patch size of Table 1, the
    graph's input and output names, the input's channels ((B, C, 128, 128), C from the
    preprocessing) and the output's channels (C per named output), the VAE's noise input and
    its parameters. Checked once, at load, before any image is read."""
    def bad(problem: str):
        return SsimaeError(f"damaged export ({problem})", where)

    outputs = info.get("outputs")
    if not (isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs)):
        raise bad(f"its outputs must be a list of names, got {outputs!r}")
    residual = settings.residual or info.get("residual")
    if not isinstance(residual, str) or residual not in RESIDUALS:
        raise bad(f"unknown residual {residual!r}")
    missing = [n for n in RESIDUALS.lookup(residual).needs if n not in outputs]
    if missing:
        raise bad(f"the {residual} residual needs the output(s) {', '.join(missing)}")
    if info.get("patch_size") != PATCH_SIZE:
        raise bad(f"patch size {info.get('patch_size')!r}, expected {PATCH_SIZE}")
    if not isinstance(info.get("model"), str) or not isinstance(info.get("params", {}), (dict, type(None))):
        raise bad("its model name or parameters are missing")
    channels = settings.preprocess.channels
    noise = info.get("noise")
    inputs = {i.name: i.shape for i in session.get_inputs()}
    expected = {info.get("input"), *(["noise"] if noise is not None else []),
                *(["masks"] if info.get("masks") is not None else [])}
    if set(inputs) != expected:
        raise bad(f"the graph's inputs are {', '.join(map(str, inputs))}, its metadata says "
                  f"{', '.join(map(str, expected))}")
    _check_dims(inputs[info["input"]], (None, channels, PATCH_SIZE, PATCH_SIZE), "input", bad)
    graph_outputs = {o.name: o.shape for o in session.get_outputs()}
    if info.get("output") not in graph_outputs:
        raise bad(f"the graph has no output {info.get('output')!r}")
    _check_dims(graph_outputs[info["output"]], (None, len(outputs) * channels, PATCH_SIZE, PATCH_SIZE), "output",
                bad)
    if residual == "vae":
        obs_var = (info.get("params") or {}).get("obs_var")
        if not (isinstance(obs_var, (int, float)) and math.isfinite(obs_var) and obs_var > 0):
            raise bad(f"the vae residual needs a positive obs_var, got {obs_var!r}")
    if noise is not None:
        if not isinstance(noise, dict):
            raise bad(f"its noise must be a mapping, got {noise!r}")
        shape, samples = noise.get("shape"), noise.get("samples")
        if noise.get("generator") != NOISE_GENERATOR:
            raise SsimaeError(f"unknown noise generator {noise.get('generator')!r}", where)
        if not (isinstance(samples, int) and 1 <= samples <= MAX_SAMPLES and isinstance(shape, list)
                and len(shape) == 3 and all(isinstance(v, int) and 1 <= v <= 8192 for v in shape)):
            raise bad(f"its noise must have 1..{MAX_SAMPLES} samples of shape [d, 1, 1], got {samples!r}, {shape!r}")


def _check_dims(shape, expected: tuple, what: str, bad) -> None:
    """A graph input's or output's shape (ints, or names for dynamic axes) against
    ``expected`` (None: any)."""
    if len(shape) != len(expected) or any(e is not None and isinstance(d, int) and d != e
                                          for d, e in zip(shape, expected)):
        raise bad(f"its {what} has shape {list(shape)}, expected (batch, {', '.join(map(str, expected[1:]))})")


class OnnxDetector(scoring.Scorer):
    """An exported model run by onnxruntime: the same interface as
    :class:`ssimae.inference.detector.Detector` (``analyze``, ``analyze_many``, ``residual_map``,
    ``segment``, ``threshold``, ``settings``), without torch.

    Built by :meth:`load`, from an onnxruntime session and the export's JSON.
    """

    engine = "onnx"

    def __init__(self, session, info: dict, onnx_path: str | os.PathLike):
        self.session = session
        self.info = info
        self.path = Path(onnx_path)
        self.settings = settings_from_info(info.get("inference"), onnx_path)
        check_export(info, self.settings, session, onnx_path)
        self.params = SimpleNamespace(**(info.get("params") or {}))
        self.outputs = tuple(info["outputs"])
        self.noise = info.get("noise")

        def bad(problem: str):
            return SsimaeError(f"damaged export ({problem})", onnx_path)

        self.geometry = check_geometry(info.get("geometry"), bad)
        self.masks = info.get("masks")
        self._window_masks = None if self.masks is None else check_masks(self.masks, bad)
        self._model_params = self.settings.model_params  # applied by the export, fixed in its graph
        scoring.check_tiling(self.settings, self.geometry, self.title)

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int | None = None) -> "OnnxDetector":
        """Load an export folder (``model.onnx`` inside) or an ``.onnx`` file; ``threads``:
        onnxruntime's intra-op threads (None: its default, all cores). The export of a fused
        run gives a :class:`ssimae.inference.fusion.FusedDetector` of OnnxDetectors."""
        from ssimae.inference.fusion import FusedDetector, is_fusion

        if is_fusion(path):
            return FusedDetector.load(path, "onnx", threads=threads)
        session, onnx_path, info = open_export(path, threads)
        try:
            return cls(session, info, onnx_path)
        except (KeyError, TypeError, ValueError) as e:
            raise SsimaeError(f"damaged export ({type(e).__name__}: {str(e)[:120]})", onnx_path) from None

    @property
    def model_name(self) -> str:
        return self.info["model"]

    @property
    def title(self) -> str:
        """The model's name in words, e.g. "SSIM-AE" (stored by the export)."""
        return self.info.get("title", self.info["model"])

    @property
    def default_residual(self) -> str:
        """The run's residual (fixed at training and stored by the export)."""
        return self.settings.residual or self.info["residual"]

    def patch_fn(self):
        """(B, C, 128, 128) float32 -> (B, len(outputs) * C, 128, 128) through the graph; a
        sampling model gets its noise from a generator seeded anew for every image."""
        names = (self.info["input"], self.info["output"])
        if self._window_masks is not None:
            return lambda batch: self.image_fn(batch, self._window_masks)
        if self.noise is None:
            return lambda batch: self.session.run([names[1]], {names[0]: batch})[0]
        gen = TorchCpuNormal(self.settings.seed)
        samples, shape = self.noise["samples"], tuple(self.noise["shape"])

        def fn(batch: np.ndarray) -> np.ndarray:
            noise = np.stack([gen.randn((len(batch), *shape)) for _ in range(samples)])
            return self.session.run([names[1]], {names[0]: batch, "noise": noise})[0]

        return fn

    def image_fn(self, batch: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        """(B, C, h, w) float32 (a whole image or a tile) -> (B, len(outputs) * C, h, w) through
        the graph of a fully convolutional model, with its masks (P, 1, h, w) if it has them."""
        feed = {self.info["input"]: np.ascontiguousarray(batch, dtype=np.float32)}
        if masks is not None:
            feed["masks"] = np.ascontiguousarray(masks, dtype=np.float32)
        return self.session.run([self.info["output"]], feed)[0]

    def analyze_batch(self, images, residuals=("l2", "ssim")) -> list[tuple[np.ndarray, dict]]:
        """One reconstruction and several residual maps of each image, as
        :meth:`ssimae.inference.detector.Detector.analyze_batch`: the patches of all ``images``
        go through the graph together (batches of ``settings.batch_size`` patches; a sampling
        model's noise is drawn per call, so its maps depend on the batching, as torch's do),
        or each image in whole-image passes (``settings.tiling``)."""
        s = self.settings
        if s.model_params != self._model_params:
            raise SsimaeError("the model's test-time settings (model_params) are fixed by the export; "
                              "export the run again with the new ones", self.path)
        prepared = [scoring.prepare(im, s) for im in images]
        pooled = scoring.reconstruct([padded for _, padded, _ in prepared], s, self.geometry, self.patch_fn(),
                                     self.image_fn, self.masks, self.title)
        ctx = ResidualContext(s, self.params)
        return [scoring.finish(image.shape, size, padded, scoring.named_outputs(p, self.outputs, s.preprocess.channels),
                               residuals, ctx)
                for (image, padded, size), p in zip(prepared, pooled)]
