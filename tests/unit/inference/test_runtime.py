"""Deployment without PyTorch: the ONNX export and the torch-free runtime, against the torch path.

Parity: on the demo data, the residual maps of the torch detector and of the exported model
run by onnxruntime agree within the rounding of two kernel sets (:func:`engine_tolerance`),
and their masks and verdicts agree except where a value lies within that tolerance of the
threshold. The runtime also runs in a process where importing torch fails.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers.clicheck import TINY
from tests.helpers.floats import RESIDUAL_RTOL, maps_close, vae_outputs, vae_residual_tolerance

from ssimae.runs.checkpoint import load_checkpoint
from ssimae.cli.main import main
from ssimae.inference.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.io.images import read_image
from ssimae.core.morphology import segment
from ssimae.runtime import TorchCpuNormal
from ssimae.core.ssim_torch import ssim_map
from ssimae.core.ssim import SsimOptions, ssim_map_numpy

SRC = str(Path(__file__).resolve().parents[3] / "src")


pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

def test_noise_reproduces_torch_randn_call_after_call():
    for seed in (0, 3, 2**32 + 5):
        gen = torch.Generator().manual_seed(seed)
        ours = TorchCpuNormal(seed)
        for shape in [(36, 100, 1, 1), (5, 8, 1, 1), (16,), (3, 7), (64, 500, 1, 1)]:
            ref = torch.randn(shape, generator=gen).numpy()
            got = ours.randn(shape)
            assert got.shape == ref.shape and got.dtype == np.float32
            assert np.abs(got - ref).max() < 1e-5, (seed, shape)
    with pytest.raises(SsimaeError, match="fewer than 16"):
        TorchCpuNormal(0).randn((3, 5))


@pytest.mark.parametrize("opts,shape", [
    (SsimOptions(), (70, 90)),
    (SsimOptions(window_size=7, gaussian=False), (40, 33)),
    (SsimOptions(alpha=0.5, beta=2.0, gamma=1.5, data_range=2.0), (50, 60)),
    (SsimOptions(), (6, 9)),  # smaller than the half window: edge replication
])
def test_numpy_ssim_equals_torch_ssim(opts, shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    y = np.clip(x + 0.2 * rng.standard_normal(shape), 0, 1)
    y[: shape[0] // 2, : shape[1] // 2] = 0.3  # a flat region
    ref = ssim_map(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], **opts.kwargs())[0, 0].numpy()
    assert np.abs(ssim_map_numpy(x, y, **opts.kwargs()) - ref).max() < 1e-10


# --- exported runs on the demo data ------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(trained_run, demo_root, tmp_path_factory):
    """{model: (run folder, export folder)} for the SSIM-AE, the l2-AE, the VAE and the models
    beyond the paper."""
    pytest.importorskip("onnxruntime", reason="the ONNX runtime tests need onnxruntime (pip install 'ssimae[onnx]')")
    pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install 'ssimae[onnx]')")
    base = tmp_path_factory.mktemp("exports")
    runs = {"ssim": trained_run}
    for model in ("l2", "vae", *BEYOND):
        runs[model] = base / model
        assert main(["train", "--data", str(demo_root), "--model", model, "--out", str(runs[model]), *TINY]) == 0
    out = {}
    for model, run in runs.items():
        assert main(["export", str(run), "--format", "onnx", "--out", str(base / f"{model}-onnx")]) == 0
        out[model] = (run, base / f"{model}-onnx")
    return out


BEYOND = ("inpaint", "draem-recon", "draem")  # the models beyond the paper
OWN_RESIDUAL = {"inpaint": "ssim", "draem-recon": "msgms"}


def demo_images(demo_root):
    return sorted((demo_root / "test").rglob("*.png"))


@pytest.mark.parametrize("model", ["ssim", "l2", "vae", *BEYOND])
def test_onnx_residuals_and_masks_match_torch(exports, demo_root, model):
    from ssimae.runtime import OnnxDetector

    run, exported = exports[model]
    torch_det, onnx_det = Detector.load(run, "cpu"), OnnxDetector.load(exported, threads=2)
    assert onnx_det.default_residual == torch_det.default_residual == OWN_RESIDUAL.get(model, model)
    for f in demo_images(demo_root):
        img = read_image(f)
        ref, tol = engine_tolerance(torch_det, img)
        got = onnx_det.residual_map(img)
        assert got.shape == ref.shape == img.shape and got.dtype == np.float32
        assert np.all(np.abs(got - ref) <= tol), (model, f.name, float(np.abs(got - ref).max()))
        # the stored threshold, and one that cuts the map in half (a mask with something in it)
        for t in (torch_det.threshold, float(np.median(ref))):
            assert masks_agree_outside_ties(got, ref, t, tol), (model, f.name, t)
        # the same engine on the same image: predict is residual_map then the verdict, bit for bit
        pred = onnx_det.predict(img)
        assert np.array_equal(pred.residual, got) and pred.threshold == torch_det.threshold
        assert np.array_equal(pred.mask, segment(got, onnx_det.threshold, onnx_det.opening_diameter))
        ref_pred = torch_det.predict(img)  # the image verdict too, at the run's image threshold
        assert pred.image_threshold == ref_pred.image_threshold is not None
        # the image score (max or top-1% mean of the opened map) moves by at most the map's
        # largest change: the opening and both scores are 1-Lipschitz in the max norm
        score_tol = float(np.max(tol))
        assert abs(pred.score - ref_pred.score) <= score_tol
        if abs(ref_pred.score - ref_pred.image_threshold) > score_tol:
            assert pred.defective == ref_pred.defective


def engine_tolerance(torch_det, img):
    """(torch's residual map of ``img``, the (H, W) bound on its difference from onnxruntime's).

    The two engines run the same graph with their own kernels (oneDNN / ATen, MLAS): every
    layer's sums in another order, the rounding of tests/helpers/floats.py, so the network's
    outputs and a residual of order 1 agree within :data:`RESIDUAL_RTOL` (relative, absolute
    floor the same). The VAE's noise (:class:`TorchCpuNormal`) equals torch's to float rounding,
    a change of the same kind; its residual amplifies output changes where v = s - m^2 cancels,
    so its bound is that of the outputs propagated through R (:func:`vae_residual_tolerance`)."""
    if torch_det.model.name != "vae":
        ref = torch_det.residual_map(img)
        return ref, RESIDUAL_RTOL * (1 + np.abs(ref))
    assert torch_det.settings.smooth == 0 and not torch_det.settings.preprocess.resizes  # R of the outputs as is
    ref, mean, second = vae_outputs(torch_det, img)
    return ref, vae_residual_tolerance(img, mean, second, ref, torch_det.params.obs_var)


def masks_agree_outside_ties(got, ref, t, tol):
    """The opened masks of two maps at threshold ``t`` are equal once the pixels within ``tol``
    of ``t`` (where either side of the threshold is legitimate) are put on the same side in
    both, either way; with no such pixel, they are equal as they are."""
    near = np.abs(ref - t) <= tol
    for value in (t - 1, t + 1):
        a, b = np.where(near, value, got), np.where(near, value, ref)
        if not np.array_equal(segment(a, t, 4), segment(b, t, 4)):
            return False
    return True


def test_export_metadata_round_trip(exports):
    import onnx

    run, exported = exports["vae"]
    info = json.loads((exported / "ssimae.json").read_text())
    meta = {p.key: p.value for p in onnx.load(str(exported / "model.onnx")).metadata_props}
    assert json.loads(meta["ssimae"]) == info
    settings = load_checkpoint(run)["settings"]
    # threshold, rule, stride, SSIM, opening, ... (as JSON: tuples become lists)
    assert info["inference"] == json.loads(json.dumps(settings.to_dict()["inference"]))
    assert info["model"] == "vae" and info["latent_dim"] == settings.train.latent_dim == 8
    assert info["params"]["samples"] == 6 and info["noise"]["samples"] == 6 and info["noise"]["shape"] == [8, 1, 1]
    from ssimae import __version__

    assert info["ssimae_version"] == __version__ and float(meta["ssimae.threshold"]) == settings.inference.threshold


def test_cli_export_and_predict_with_onnx(exports, demo_root, tmp_path):
    run, exported = exports["ssim"]
    out_t, out_o = tmp_path / "torch", tmp_path / "onnx"
    test_dir = demo_root / "test"
    assert main(["predict", str(run), str(test_dir), "--out", str(out_t), "--save-raw", "--quiet"]) == 0
    assert main(["predict", "--engine", "onnx", str(exported), str(test_dir), "--out", str(out_o), "--save-raw",
                 "--quiet"]) == 0
    raws = sorted(p.relative_to(out_t) for p in out_t.rglob("*.npy"))
    assert raws and raws == sorted(p.relative_to(out_o) for p in out_o.rglob("*.npy"))
    for rel in raws:
        maps_close(np.load(out_o / rel), np.load(out_t / rel))  # the SSIM-AE: engine_tolerance's flat bound
        assert (out_o / rel.parent / f"{rel.stem}_mask.png").exists()


def test_runtime_runs_where_torch_cannot_be_imported(exports, demo_root, tmp_path):
    run, exported = exports["vae"]
    img = demo_images(demo_root)[-1]
    ref, tol = engine_tolerance(Detector.load(run, "cpu"), read_image(img))
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "tol.npy", tol)
    script = f"""
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import numpy as np
from ssimae.io.images import read_image
from ssimae.commands.predict import predict
from ssimae.runtime import OnnxDetector
try:
    import torch
    raise SystemExit("torch could be imported")
except ImportError:
    pass
res = OnnxDetector.load({str(exported)!r}).residual_map(read_image({str(img)!r}))
ref, tol = np.load({str(tmp_path / "ref.npy")!r}), np.load({str(tmp_path / "tol.npy")!r})
assert np.all(np.abs(res - ref) <= tol), np.abs(res - ref).max()
predict({str(exported)!r}, [{str(img)!r}], {str(tmp_path / "out")!r}, engine="onnx", progress=False)
from ssimae.runtime import main  # the command for machines without torch
assert main([{str(exported)!r}, {str(img.parent)!r}, "--out", {str(tmp_path / "cmd")!r}, "--quiet"]) == 0
assert main([{str(exported)!r}, {str(tmp_path / "none")!r}, "--out", {str(tmp_path / "cmd")!r}]) == 2
assert sys.modules["torch"] is None and not any(m.startswith("torch.") for m in sys.modules)
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert (tmp_path / "out" / f"{img.stem}_mask.png").exists()
    assert (tmp_path / "cmd" / f"{img.stem}_mask.png").exists()


@pytest.mark.parametrize("missing,command", [("onnxruntime", "predict"), ("onnx", "export")])
def test_missing_extra_is_one_clear_line(exports, tmp_path, missing, command):
    run, exported = exports["l2"]
    argv = {"predict": ["predict", "--engine", "onnx", str(exported), str(exported), "--out", str(tmp_path)],
            "export": ["export", str(run), "--out", str(tmp_path / "e")]}[command]
    script = f"""
import sys
sys.modules[{missing!r}] = None
from ssimae.cli.main import main
sys.exit(main({argv!r}))
"""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    assert "pip install 'ssimae[onnx]'" in err and missing in err


def test_bad_exports_are_one_clear_line(exports, trained_run, tmp_path, capsys):
    def one_line(*needles):
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("ssimae: error:") and "Traceback" not in err, err
        for n in needles:
            assert n in err, err

    from PIL import Image

    img = tmp_path / "in.png"
    Image.fromarray(np.zeros((130, 130), np.uint8)).save(img)
    assert main(["predict", "--engine", "onnx", str(trained_run), str(img), "--out", str(tmp_path)]) == 2
    one_line("model.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["predict", "--engine", "onnx", str(junk), str(img), "--out", str(tmp_path)]) == 2
    one_line("junk.onnx", "not a readable ONNX model")
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")]) == 2
    one_line("nowhere")
    import onnx

    for meta, needle in [('{"format": "other", "version": 1}', "unsupported export"),
                         ('{"format": "ssimae-onnx", "version": 1}', "damaged export")]:
        graph = onnx.load(str(exports["l2"][1] / "model.onnx"))
        next(p for p in graph.metadata_props if p.key == "ssimae").value = meta
        onnx.save(graph, str(tmp_path / "tampered.onnx"))
        assert main(["predict", "--engine", "onnx", str(tmp_path / "tampered.onnx"), str(img), "--out",
                     str(tmp_path)]) == 2
        one_line("tampered.onnx", needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_is_one_clear_line(trained_run, demo_root, tmp_path, capsys):
    img = demo_images(demo_root)[0]
    assert main(["predict", str(trained_run), str(img), "--out", str(tmp_path), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CUDA is not available" in err and "Traceback" not in err, err
    assert main(["train", "--data", str(demo_root), "--out", str(tmp_path / "r"), "--device", "cuda:0", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CUDA is not available" in err, err
    assert main(["predict", str(trained_run), str(img), "--out", str(tmp_path), "--device", "gpu7"]) == 2
    assert "unknown device" in capsys.readouterr().err


# --- whole-image inference and int8 -------------------------------------------------------------

@pytest.mark.parametrize("model", BEYOND)
def test_onnx_whole_image_matches_torch_at_any_size(exports, demo_root, model):
    """The export of a fully convolutional model takes any height and width: whole-image maps
    (one pass, and tiles of 256 px) of demo and odd-sized images agree with torch within the
    engines' bound (:func:`engine_tolerance`: the same graph, other kernels)."""
    from ssimae.runtime import OnnxDetector

    run, exported = exports[model]
    torch_det, onnx_det = Detector.load(run, "cpu"), OnnxDetector.load(exported, threads=2)
    assert all(isinstance(d, str) for d in onnx_det.session.get_inputs()[0].shape[2:])  # dynamic
    rng = np.random.default_rng(0)
    images = [read_image(demo_images(demo_root)[-1]), rng.random((150, 300), np.float32),
              rng.random((300, 347), np.float32)]
    for changes in ({"tiling": "whole"}, {"tiling": "whole", "tile_size": 256}):
        t, o = torch_det.with_settings(**changes), onnx_det.with_settings(**changes)
        for img in images:
            ref, tol = engine_tolerance(t, img)
            got = o.residual_map(img)
            assert got.shape == img.shape and np.all(np.abs(got - ref) <= tol), (model, changes, img.shape)


def test_onnx_refuses_test_time_changes_the_export_fixed(exports):
    from ssimae.runtime import OnnxDetector

    onnx_det = OnnxDetector.load(exports["inpaint"][1]).with_settings(model_params={"cell_sizes": [8]})
    with pytest.raises(SsimaeError, match="fixed by the export"):
        onnx_det.residual_map(np.zeros((128, 128), np.float32))
    with pytest.raises(SsimaeError, match="not fully convolutional"):
        OnnxDetector.load(exports["l2"][1]).with_settings(tiling="whole").residual_map(np.zeros((128, 128), np.float32))


def test_export_bakes_test_time_cell_sizes(exports, tmp_path):
    """A run whose inference settings change the passes exports them: the runtime's maps are
    the torch detector's with the same changes."""
    from dataclasses import replace

    from ssimae.runs.checkpoint import load_run, save_run
    from ssimae.runtime import OnnxDetector

    run = load_run(exports["inpaint"][0])
    changed = replace(run.settings, inference=replace(run.settings.inference, model_params={"cell_sizes": [8]},
                                                      tiling="whole"))
    save_run(tmp_path / "run" / "model.pt", changed, run.state)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "onnx")]) == 0
    onnx_det = OnnxDetector.load(tmp_path / "onnx")
    assert onnx_det.masks["cell_sizes"] == [8] and onnx_det.info["params"]["cell_sizes"] == [8]
    img = np.random.default_rng(1).random((140, 200)).astype(np.float32)
    ref, tol = engine_tolerance(Detector.load(tmp_path / "run", "cpu"), img)
    assert np.all(np.abs(onnx_det.residual_map(img) - ref) <= tol)
    assert np.any(np.abs(Detector.load(run, "cpu").with_settings(tiling="whole").residual_map(img) - ref) > tol)


def pixel_and_image_auc(detector, demo_root) -> tuple[float, float]:
    """(pixel ROC AUC, image ROC AUC) of ``detector`` on the demo's test set (evaluate's metrics)."""
    from ssimae.core.metrics import evaluate_maps
    from ssimae.data.datasets import load_dataset
    from ssimae.inference.test_set import score_test_set

    scores = score_test_set(detector, load_dataset(demo_root, log=None, progress=False), progress=False)
    m = evaluate_maps(scores.maps[detector.default_residual], scores.masks, scores.types,
                      image_score=detector.settings.image_score)
    return m["pixel_roc_auc"], m["image_roc_auc"]


# int8 against fp32 of the same export: pixel ROC AUC within the target, 0.005; the image
# AUC of the tiny demo (2 good images) moves in steps of 1/(2 x defective images), so one swapped
# pair is allowed there.
INT8_PIXEL_AUC_TOL = 0.005


@pytest.mark.parametrize("model", ["ssim", "inpaint", "draem-recon"])
def test_int8_export_scores_near_fp32_and_loads_without_torch(exports, demo_root, tmp_path, model):
    from ssimae.runtime import OnnxDetector

    run, _ = exports[model]
    out = tmp_path / "int8"
    assert main(["export", str(run), "--out", str(out), "--int8"]) == 0
    int8, fp32 = OnnxDetector.load(out, threads=2), OnnxDetector.load(out / "model-fp32.onnx", threads=2)
    q = int8.info["quantization"]
    assert q["quantized_ops"]["Conv"] >= 8 and q["calibration_images"] >= 1 and "quantization" not in fp32.info
    if model != "ssim":  # the U-Nets' 2 x 2 transposed convolutions, all rewritten (Table 1's 4 x 4 kept)
        assert q["subpixel_conv_transposes"] >= 3 and "ConvTranspose" not in q["quantized_ops"]
    assert json.loads((out / "ssimae.json").read_text())["quantization"] == q
    (p8, i8), (p32, i32) = pixel_and_image_auc(int8, demo_root), pixel_and_image_auc(fp32, demo_root)
    n_bad = sum(1 for f in demo_images(demo_root) if f.parent.name != "good")
    assert abs(p8 - p32) <= INT8_PIXEL_AUC_TOL, (model, p8, p32)
    assert abs(i8 - i32) <= 1 / (2 * n_bad) + 1e-9, (model, i8, i32)
    img = demo_images(demo_root)[0]
    np.save(tmp_path / "ref.npy", int8.residual_map(read_image(img)))
    script = f"""
import sys
sys.modules["torch"] = None
import numpy as np
from ssimae.io.images import read_image
from ssimae.runtime import OnnxDetector
res = OnnxDetector.load({str(out)!r}).residual_map(read_image({str(img)!r}))
assert np.array_equal(res, np.load({str(tmp_path / "ref.npy")!r}))
assert not any(m.startswith("torch.") for m in sys.modules)
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,bias", [
    (3, 5, 4, 2, 1, True),   # Table 1's decoder: kernel 4, stride 2, pad 1
    (4, 2, 2, 2, 0, True),   # the U-Nets' upsampling: kernel 2, stride 2
    (3, 2, 2, 2, 0, False),
    (2, 3, 6, 2, 2, True),   # more taps per phase
    (2, 2, 3, 3, 0, True),   # stride 3
])
def test_subpixel_rewrite_equals_the_transposed_convolution(tmp_path, c_in, c_out, k, stride, pad, bias):
    """The int8 export's rewrite of a ConvTranspose into Conv + DepthToSpace computes the same
    map: both graphs (onnxruntime, float32) within the float32 summation bound
    (:func:`tests.helpers.floats.sum_bound`) of torch's float64 transposed convolution."""
    import onnx
    import onnxruntime as ort
    from tests.helpers.floats import sum_bound

    from ssimae.inference.export import subpixel_conv_transposes

    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(c_in, c_out, k, stride, pad, bias=bias)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.rand(2, c_in, 9, 7),), tmp_path / "t.onnx", input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    graph = onnx.load(tmp_path / "t.onnx")
    rewritten, count = subpixel_conv_transposes(onnx.load(tmp_path / "t.onnx"), same_work=False)
    onnx.checker.check_model(rewritten)
    assert subpixel_conv_transposes(onnx.load(tmp_path / "t.onnx"))[1] == int(k == stride)  # the export's default
    assert count == 1 and [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    x = torch.randn(3, c_in, 11, 6, dtype=torch.float64)
    w, b = layer.weight.detach().double(), None if layer.bias is None else layer.bias.detach().double()
    ref = torch.nn.functional.conv_transpose2d(x, w, b, stride, pad).numpy()
    abs_sum = torch.nn.functional.conv_transpose2d(x.abs(), w.abs(), None if b is None else b.abs(), stride, pad)
    # the float32 sums (c_in k^2 products and the bias), plus the inputs' rounding to float32
    bound = sum_bound(abs_sum.numpy(), c_in * k * k + 1) + abs_sum.numpy() * 2.0**-24
    for g in (graph, rewritten):
        got = ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x.numpy().astype(np.float32)})[0]
        assert got.shape == ref.shape == (3, c_out, 11 * stride, 6 * stride)
        assert np.all(np.abs(got - ref) <= bound)


def test_int8_calibration_of_a_segmentation_head_includes_its_own_anomalies():
    """DRAEM's int8 calibration patches: every other one holds the model's own synthetic
    anomaly (the generator replayed with the same seed gives the same patch), the rest are
    the defect-free patches bit for bit."""
    from ssimae.data.synthetic import make_anomaly, source_textures
    from ssimae.inference.export import with_synthetic_anomalies

    rng = np.random.default_rng(3)
    patches = rng.random((5, 1, 32, 32), dtype=np.float32)
    out = with_synthetic_anomalies(patches, "perlin", seed=7)
    assert out.shape == patches.shape and out.dtype == np.float32
    assert np.array_equal(out[1::2], patches[1::2])
    replay, sources = np.random.default_rng(7), source_textures()
    for i in range(0, 5, 2):
        expected = make_anomaly(patches[i, 0], patches[(i + 1) % 5, 0], replay, sources, "perlin", p_anomaly=1.0)[0]
        assert np.array_equal(out[i, 0], expected)
    assert not np.array_equal(out[::2], patches[::2])


def test_subpixel_rewrite_leaves_other_transposed_convolutions(tmp_path):
    """A ConvTranspose whose output is not its input times its stride (here kernel 3, stride 2,
    pad 1: 2n - 1 pixels) is kept as it is."""
    import onnx

    from ssimae.inference.export import subpixel_conv_transposes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.ConvTranspose2d(2, 2, 3, 2, 1), (torch.rand(1, 2, 5, 5),), tmp_path / "t.onnx",
                          dynamo=False)
    rewritten, count = subpixel_conv_transposes(onnx.load(tmp_path / "t.onnx"), same_work=False)
    assert count == 0 and [n.op_type for n in rewritten.graph.node] == ["ConvTranspose"]


def test_int8_refuses_a_graph_whose_operators_do_not_quantize(tmp_path):
    """A graph of elementwise operators only (no convolution or product to run in int8) is
    refused in one line."""
    import onnx

    from ssimae.inference.export import quantize_int8

    class Elementwise(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(x * 2 - 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(Elementwise(), (torch.rand(2, 1, 8, 8),), tmp_path / "e.onnx", input_names=["patches"],
                          output_names=["outputs"], dynamo=False)
    feeds = [{"patches": np.random.default_rng(0).random((2, 1, 8, 8), np.float32)}]
    with pytest.raises(SsimaeError, match="operators do not quantize") as err:
        quantize_int8(onnx.load(tmp_path / "e.onnx"), feeds, "elementwise")
    assert "\n" not in str(err.value)


def test_int8_without_calibration_images_is_one_clear_line(exports, tmp_path, capsys):
    from tests.helpers.clicheck import one_error_line

    run, _ = exports["l2"]
    assert main(["export", str(run), "--out", str(tmp_path / "e"), "--int8", "--good", str(tmp_path / "none")]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "e" / "model.onnx").exists()


@pytest.mark.parametrize("change,needle", [
    (lambda info: info["masks"].update(window=["012"] * len(info["masks"]["cell_sizes"])), "mask grid"),
    (lambda info: info["masks"].update(sets=40), "2..16 sets"),
    (lambda info: info.update(masks=None), "inputs"),
    (lambda info: info.update(geometry={"multiple": 8}), "geometry"),
])
def test_damaged_masks_or_geometry_are_one_clear_line(exports, tmp_path, change, needle):
    import onnx

    from ssimae.runtime import OnnxDetector

    graph = onnx.load(str(exports["inpaint"][1] / "model.onnx"))
    entry = next(p for p in graph.metadata_props if p.key == "ssimae")
    info = json.loads(entry.value)
    change(info)
    entry.value = json.dumps(info)
    onnx.save(graph, str(tmp_path / "tampered.onnx"))
    with pytest.raises(SsimaeError, match="damaged export") as err:
        OnnxDetector.load(tmp_path / "tampered.onnx")
    assert needle in str(err.value) and "\n" not in str(err.value)
