"""Issue #21: nothing lost, nothing forged. Hostile names, concurrent writers, configs and
exported settings from elsewhere, and arrays given to the Python API: each case ends with one
line and exit status 2 (or a documented safe result), before anything is written."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
from PIL import Image

from ssimae.cli.main import main
from ssimae.io.files import TMP_PREFIX
from ssimae.io.folders import LOCK_NAME
from ssimae.io.processes import process_tag
from tests.helpers.clicheck import TINY, one_error_line
from tests.helpers.htmlpage import Page


def png(path, value=0, size=130):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path, format="PNG")
    return path


@pytest.fixture
def holder():
    """A live process standing in for another ssimae writer (its pid goes into a lock file)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


# --- 1, 2, 16: one writer per folder; stale temporaries of killed writers are removed -----------

def test_calibrate_is_refused_while_another_process_writes_the_run(run_copy, demo_root, holder, capsys):
    (run_copy / LOCK_NAME).write_text(f"{process_tag(holder.pid)} ssimae train\n")
    before = (run_copy / "model.pt").read_bytes(), (run_copy / "config.json").read_bytes()
    assert main(["calibrate", str(run_copy), "--good", str(demo_root / "train" / "good"), "--quiet"]) == 2
    one_error_line(capsys, f"training in progress (pid {holder.pid}, epoch 1 of 1)")
    assert before == ((run_copy / "model.pt").read_bytes(), (run_copy / "config.json").read_bytes())


def test_a_second_predict_into_the_same_out_is_refused(trained_run, demo_root, tmp_path, holder, capsys):
    out = tmp_path / "S"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{process_tag(holder.pid)} ssimae predict\n")
    assert main(["predict", str(trained_run), str(demo_root / "test" / "good"), "--out", str(out), "--quiet"]) == 2
    one_error_line(capsys, f"pid {holder.pid}", "ssimae predict")
    assert files_under(out) == [LOCK_NAME]


def test_calibrate_removes_the_temporary_files_of_a_killed_writer(run_copy, demo_root):
    dead = subprocess.run([sys.executable, "-c", "from ssimae.io.processes import process_tag; print(process_tag())"],
                          capture_output=True, text=True).stdout.strip()
    stale = run_copy / f"{TMP_PREFIX}{dead}-model.pt"
    stale.write_bytes(b"half a checkpoint")
    assert main(["calibrate", str(run_copy), "--good", str(demo_root / "train" / "good"), "--quiet"]) == 0
    assert not stale.exists() and not (run_copy / LOCK_NAME).exists()


# --- 3, 4, 9, 10, 13, 14, 15: output names derived, never trusted ---------------------------------

def test_a_file_named_dotdot_png_stays_inside_out(trained_run, tmp_path):
    src = tmp_path / "in"
    png(src / "..png", 200)  # hidden in a folder listing: given as a file
    png(src / "ok.png", 10)
    esc = tmp_path / "esc"
    esc.mkdir()
    assert main(["predict", str(trained_run), str(src / "..png"), str(src / "ok.png"), "--out", str(esc / "out"),
                 "--save-raw", "--quiet"]) == 0
    assert [p.name for p in esc.iterdir()] == ["out"]
    rows = [json.loads(line) for line in (esc / "out" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in rows) == ["..png", "ok.png"]
    for r in rows:  # every output of a row is inside out, under the row's own name
        assert (esc / "out" / (Path(r["path"]).with_suffix("").as_posix() + "_mask.png")).is_file()


def test_the_runtime_keeps_a_dotdot_png_inside_out_too(trained_run, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["export", str(trained_run), "--out", str(tmp_path / "x")]) == 0
    png(tmp_path / "in" / "..png", 200)
    (tmp_path / "esc").mkdir()
    from ssimae.runtime import main as runtime_main

    assert runtime_main([str(tmp_path / "x"), str(tmp_path / "in" / "..png"), "--out", str(tmp_path / "esc" / "out"),
                         "--save-raw", "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "esc").iterdir()] == ["out"]


def test_an_input_folder_named_thumbs_does_not_overwrite_thumbnails(trained_run, tmp_path):
    src = tmp_path / "in"
    png(src / "a.png", 0)
    png(src / "thumbs" / "a.png", 255)
    out = tmp_path / "out"
    assert main(["predict", str(trained_run), str(src), "--out", str(out), "--quiet"]) == 0
    # per image 3 outputs and 4 thumbnails, the 3 tables/report and the heat maps' colour bar: no file written twice
    assert len(files_under(out)) == 2 * (3 + 4) + 3 + 1, files_under(out)
    page = Page((out / "report.html").read_text())
    thumbs = [unquote(link) for link in page.links if link.startswith("thumbs/") and link != "thumbs/colorbar.png"]
    assert len(thumbs) == len(set(thumbs)) == 8
    inputs = sorted(int(np.asarray(Image.open(out / p)).max()) for p in thumbs if p.endswith("_input.png"))
    assert inputs == [0, 255]  # each row shows its own image


def test_names_that_break_urls_csv_and_terminals(trained_run, tmp_path, capsys):
    src = tmp_path / "in"
    names = ["a#b.png", "q?x.png", "p%41.png", "t\tab.png", "=1+2.png", "+SUM(A1).png", "@x.png", "-2.png"]
    for i, n in enumerate(names):
        png(src / n, 20 * i)
    (src / "bad\x1b]0;owned\x07\x1b[2J.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["predict", str(trained_run), str(src), "--out", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err and "\x07" not in captured.err and "\\x1b" in captured.err
    assert f"wrote predictions for {len(names)} images" in captured.out
    page = Page((out / "report.html").read_text())
    for link in page.links:  # percent-encoded, and resolving once decoded
        assert quote(unquote(link)) == link and (out / unquote(link)).is_file(), link
    import csv

    cells = [row[0] for row in csv.reader((out / "predictions.csv").open(newline=""))][1:]
    assert len(cells) == len(names)
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert sum(c.startswith("'") for c in cells) == 4  # =1+2, +SUM, @x, -2: neutralised with a leading '


def test_a_name_that_is_not_utf8_and_a_very_long_name(trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    png(tmp_path / "x.png", 100)
    shutil.copy(tmp_path / "x.png", os.fsencode(src) + b"/caf\xe9.png")
    shutil.copy(tmp_path / "x.png", src / ("n" * 245 + ".png"))
    out = tmp_path / "out"
    assert main(["predict", str(trained_run), str(src), "--out", str(out), "--save-raw", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and any("caf\\xe9" in r["source"] for r in rows)
    assert (out / "report.html").is_file() and (out / "predictions.csv").read_text(encoding="utf-8")
    assert all(len(p.name.encode()) <= 255 for p in out.rglob("*"))


def test_atomic_write_reports_a_name_too_long_in_one_line(tmp_path):
    from ssimae.errors import SsimaeError
    from ssimae.io.files import atomic_write_bytes

    with pytest.raises(SsimaeError, match="cannot write file") as e:
        atomic_write_bytes(tmp_path / ("x" * 260), b"data")
    assert "\n" not in str(e.value)


def test_evaluate_links_of_a_defect_type_with_a_hash(trained_run, demo_root, tmp_path):
    data = Path(shutil.copytree(demo_root, tmp_path / "data"))
    kind = next(p.name for p in (data / "test").iterdir() if p.name != "good")
    (data / "test" / kind).rename(data / "test" / "a#b")
    (data / "ground_truth" / kind).rename(data / "ground_truth" / "a#b")
    out = tmp_path / "rep"
    assert main(["evaluate", str(trained_run), "--data", str(data), "--out", str(out), "--quiet"]) == 0
    page = Page((out / "report.html").read_text())
    assert any("a%23b" in link for link in page.links)
    for link in page.links:
        assert (out / unquote(link)).is_file(), link


# --- 5, 7, 8: configs read with limits, one validation before any folder --------------------------

def write_config(path, edit):
    from ssimae.runs.settings import RunSettings

    d = RunSettings().to_dict()
    edit(d)
    path.write_text(json.dumps(d))
    return path


def test_threshold_history_is_not_copied_from_a_config(demo_root, tmp_path):
    cfg = write_config(tmp_path / "c.json", lambda d: d["inference"].update(
        threshold_history=[{"previous_threshold": 1.0, "previous": {}, "recalibrated_on": "2020-01-01",
                            "good": "good5", "n_images": 5}]))
    out = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--data", str(demo_root), "--out", str(out), *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["inference"]["threshold_history"] == []


@pytest.mark.parametrize("name, edit, needle", [
    ("junk-history", lambda d: d["inference"].update(threshold_history=[{"x": 1}]), "threshold_history"),
    ("data-root-type", lambda d: d["train"].update(data={"root": 42}), "train.data.root"),
    ("data-unknown-key", lambda d: d["train"].update(data={"colour": "x"}), "train.data"),
    ("residual", lambda d: d["inference"].update(residual="bogus"), "bogus"),
    ("recipe", lambda d: d["train"].update(recipe="bogus"), "bogus"),
    ("seed", lambda d: d["train"].update(seed=2**70), "seed"),
    ("latent", lambda d: d["train"].update(latent_dim=10**9), "latent"),
    ("opening", lambda d: d["inference"].update(opening_diameter=10**6), "opening"),
    ("size", lambda d: d["inference"]["preprocess"].update(size=[200000, 200000]), "size"),
    ("device", lambda d: d["train"].update(device="cuda:7"), "device"),
    # found by the adversarial pass of this issue:
    ("vae-samples", lambda d: d["train"].update(model="vae", params={"samples": 10**9}), "--vae-samples"),
    ("ssim-window", lambda d: d["inference"]["ssim"].update(window_size=10**6 + 1), "window size"),
    ("ssim-exponent", lambda d: d["inference"]["ssim"].update(alpha=1e400), "alpha"),
    ("threshold-inf", lambda d: d["inference"].update(threshold=1e400), "threshold"),
    ("history-flood", lambda d: d["inference"].update(threshold_history=[
        {"previous_threshold": 1.0, "previous": {}, "recalibrated_on": "x", "good": "g", "n_images": 1}] * 1001),
     "1000 entries"),
])
def test_bad_config_is_one_line_and_creates_no_folder(demo_root, tmp_path, capsys, name, edit, needle):
    cfg = write_config(tmp_path / f"{name}.json", edit)
    out = tmp_path / "never"
    assert main(["train", "--config", str(cfg), "--data", str(demo_root), "--out", str(out), *TINY]) == 2
    one_error_line(capsys, needle)
    assert not out.exists()


def test_data_root_that_is_a_file_creates_no_folder(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--data", "/etc/passwd", "--out", str(out), *TINY]) == 2
    one_error_line(capsys, "/etc/passwd")
    assert not out.exists()


def test_huge_seed_on_the_command_line(demo_root, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--data", str(demo_root), "--out", str(out), "--seed", "99999999999999999999", *TINY]) == 2
    one_error_line(capsys, "--seed")
    assert not out.exists()


@pytest.mark.parametrize("name, content", [
    ("latin1.json", "{\"train\": {\"device\": \"caf\xe9\"}}".encode("latin-1")),
    ("deep.json", b"[" * 200_000 + b"]" * 200_000),
    ("deep.yaml", b"- " * 1 + b"[" * 20_000 + b"]" * 20_000),
    ("laughs.yaml", b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                    b"train: {data: {root: [*d, *d, *d, *d, *d, *d, *d, *d, *d]}}\n"),
    ("big.json", b" " * (2 * 2**20) + b"{}"),
])
def test_config_files_are_read_with_limits(demo_root, tmp_path, capsys, name, content):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    cfg = tmp_path / name
    cfg.write_bytes(content)
    t0 = time.monotonic()
    assert main(["train", "--config", str(cfg), "--data", str(demo_root), "--out", str(tmp_path / "never"),
                 *TINY]) == 2
    one_error_line(capsys, name)
    assert time.monotonic() - t0 < 30 and not (tmp_path / "never").exists()


def test_dev_zero_as_a_config_is_refused_quickly(demo_root, tmp_path, capsys):
    t0 = time.monotonic()
    assert main(["train", "--config", "/dev/zero", "--data", str(demo_root), "--out", str(tmp_path / "n"), *TINY]) == 2
    one_error_line(capsys, "/dev/zero")
    assert time.monotonic() - t0 < 30


# --- 6: an export's settings and graph are checked at load, like a checkpoint's ------------------

@pytest.fixture(scope="module")
def export_dir(trained_run, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("exp") / "x"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    return out


def tampered(export_dir, tmp_path, edit, graph=None):
    """A copy of the export's model.onnx with its ssimae metadata edited (and, given, another graph)."""
    import onnx

    model = onnx.load(str(export_dir / "model.onnx"))
    info = json.loads(next(p for p in model.metadata_props if p.key == "ssimae").value)
    edit(info)
    target = graph if graph is not None else model
    if graph is not None:
        del target.metadata_props[:]
    props = [p for p in target.metadata_props if p.key != "ssimae"]
    del target.metadata_props[:]
    target.metadata_props.extend(props)
    target.metadata_props.add(key="ssimae", value=json.dumps(info))
    path = tmp_path / "t.onnx"
    onnx.save(target, str(path))
    return path


def identity_graph(channels, size):
    """A graph that is no ssimae export: the identity on (batch, channels, size, size)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", channels, size, size])
    y = helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", channels, size, size])
    graph = helper.make_graph([helper.make_node("Identity", ["patches"], ["outputs"])], "foreign", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("edit, needle", [
    (lambda i: i["inference"].update(threshold=float("nan")), "damaged export"),
    (lambda i: i["inference"].update(threshold="abc"), "threshold"),
    (lambda i: i["inference"].update(stride=0), "stride"),
    (lambda i: i["inference"].update(stride=-5), "stride"),
    (lambda i: i["inference"].update(stride=30.5), "stride"),
    (lambda i: i["inference"].update(batch_size=0), "batch size"),
    (lambda i: i["inference"].update(opening_diameter=-1), "opening"),
    (lambda i: i["inference"].update(opening_diameter=10**6), "opening"),
    (lambda i: i["inference"].update(smooth=float("nan")), "smooth"),
    (lambda i: i["inference"].update(smooth=-1.0), "smooth"),
    (lambda i: i["inference"]["preprocess"].update(size=[100000, 100000], scale=None), "size"),
    (lambda i: i["inference"]["preprocess"].update(scale=1000.0, size=None), "scale"),
    (lambda i: i.update(patch_size=64), "patch size"),
    (lambda i: i.update(outputs=[]), "outputs"),
    (lambda i: i.update(input="images"), "inputs"),
    (lambda i: i.update(output="nope"), "output"),
    (lambda i: i["inference"]["preprocess"].update(color=True), "input has shape"),
    (lambda i: i["inference"].update(residual="vae"), "vae"),
])
def test_bad_export_metadata_is_one_line_at_load(export_dir, tmp_path, edit, needle):
    from ssimae.errors import SsimaeError
    from ssimae.runtime import OnnxDetector

    path = tampered(export_dir, tmp_path, edit)
    with pytest.raises(SsimaeError) as e:
        OnnxDetector.load(path)
    assert needle in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_foreign_graph_with_ssimae_metadata_is_refused(export_dir, tmp_path, capsys):
    path = tampered(export_dir, tmp_path, lambda i: None, graph=identity_graph(3, 64))
    png(tmp_path / "in" / "a.png")
    assert main(["predict", "--engine", "onnx", str(path), str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "damaged export", "input has shape")
    assert not (tmp_path / "o").exists()


# --- 11, 12: arrays given to the Python API are checked like files --------------------------------

@pytest.fixture(scope="module")
def detectors(trained_run, export_dir):
    from ssimae import Detector
    from ssimae.runtime import OnnxDetector

    return [Detector.load(trained_run, "cpu"), OnnxDetector.load(export_dir)]


@pytest.mark.parametrize("make, needle", [
    (lambda img: img * 255, "[0, 1]"),
    (lambda img: img - 1, "[0, 1]"),
    (lambda img: np.where(img > 0.5, np.nan, img), "NaN"),
    (lambda img: np.full_like(img, np.inf), "NaN or infinite"),
    (lambda img: np.zeros((0, 0), np.float32), "empty"),
    (lambda img: (img * 255).astype(np.int32), "dtype"),
])
def test_bad_arrays_are_refused_by_both_engines(detectors, make, needle):
    from ssimae.errors import BadArray

    img = np.random.default_rng(0).random((130, 140)).astype(np.float32)
    for det in detectors:
        with pytest.raises(BadArray, match=needle.replace("[", r"\[").replace("]", r"\]")):
            det.predict(make(img))
        with pytest.raises(ValueError):  # BadArray is a ValueError too
            det.segment(make(img))


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
def test_uint8_is_divided_by_255_and_a_nan_threshold_is_an_error(detectors):
    from ssimae.errors import SsimaeError

    img8 = np.random.default_rng(1).integers(0, 256, (130, 140)).astype(np.uint8)
    for det in detectors:
        a, b = det.predict(img8), det.predict(img8.astype(np.float32) / 255)
        # exact by design: the same float32 pixels (uint8 / float32(255)), one image, one engine
        assert a.score == b.score and np.array_equal(a.mask, b.mask)
        for call in (lambda: det.predict(img8, threshold=float("nan")), lambda: det.segment(img8, threshold=float("nan"))):
            with pytest.raises(SsimaeError, match="nan"):
                call()


def test_a_lock_that_is_a_folder_is_one_line(trained_run, demo_root, tmp_path, capsys):
    """Adversarial pass: a folder named .ssimae.lock in --out."""
    (tmp_path / "out" / LOCK_NAME).mkdir(parents=True)
    assert main(["predict", str(trained_run), str(demo_root / "test" / "good"), "--out", str(tmp_path / "out"),
                 "--quiet"]) == 2
    one_error_line(capsys, LOCK_NAME)


# --- labels, repeated inputs --------------------------------------------------------------------

def _labels(out):
    import csv

    return {r["path"]: r["label"] for r in csv.DictReader(open(out / "predictions.csv"))}


def test_labels_from_the_first_folder_under_the_input_root(trained_run, tmp_path):
    """Cause 7: the label was the image's immediate folder: ``t/good/nested/a.png`` was
    labelled "nested" (an escape), ``cut/good/x.png`` (given the folder above ``cut``) "good".
    Now the first folder under the input root; only exactly "good" is defect-free."""
    t, root = tmp_path / "t", tmp_path / "root"
    for f in (t / "good" / "nested" / "a.png", t / "good" / "b.png", t / "crack" / "c.png", t / "Good" / "d.png",
              root / "cut" / "good" / "x.png", root / "good" / "y.png"):
        png(f, 40)
    assert main(["predict", str(trained_run), str(t), "--out", str(tmp_path / "o1"), "--quiet"]) == 0
    assert _labels(tmp_path / "o1") == {"good/nested/a.png": "good", "good/b.png": "good", "crack/c.png": "crack",
                                        "Good/d.png": "Good"}
    assert main(["predict", str(trained_run), str(root), "--out", str(tmp_path / "o2"), "--quiet"]) == 0
    assert _labels(tmp_path / "o2") == {"cut/good/x.png": "cut", "good/y.png": "good"}


def test_list_naming_one_file_several_times_gives_one_row(trained_run, tmp_path):
    """Cause 21: a list naming one file 3 times gave 3 rows (a, a-<hash>, ...). Now each real
    file is one input, where it is first named (also across inputs and symbolic links)."""
    src = tmp_path / "in"
    png(src / "a.png", 10)
    png(src / "b.png", 20)
    (src / "link.png").symlink_to(src / "a.png")
    listing = src / "list.txt"
    listing.write_text("a.png\nb.png\na.png\n./a.png\nlink.png\n")
    out = tmp_path / "o"
    assert main(["predict", str(trained_run), str(listing), str(src / "b.png"), "--out", str(out), "--quiet"]) == 0
    assert list(_labels(out)) == ["a.png", "b.png"]
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["a_mask.png", "b_mask.png"]


# --- adversarial pass 3: what an image may cost, and what is not an image -------------------------

@pytest.mark.parametrize("given", [b"\x89PNG\r\n\x1a\n", None, 3.0])
def test_detector_predict_of_bytes_none_or_a_number_names_the_type(detectors, given):
    """Cause 25: ``predict(bytes | None | 3.0)`` said "the image is empty (shape ())"."""
    from ssimae.errors import BadArray

    for det in detectors:
        with pytest.raises(BadArray) as e:
            det.predict(given)
        message = str(e.value)
        assert type(given).__name__ in message and "\n" not in message and "empty" not in message, message


@pytest.fixture
def no_network(monkeypatch):
    """The sliding window of both engines fails the test if it is ever reached."""
    def refuse(*args, **kwargs):
        raise AssertionError("the image reached the network")

    for name in ("sliding_window_many", "whole_image"):  # how both engines reach their network
        monkeypatch.setattr(f"ssimae.inference.scorer.{name}", refuse)


def test_size_ceilings_admit_only_work_that_finishes(detectors, no_network, tmp_path, capsys):
    """Cause 11: an array of 20000 x 20000 ran for minutes (a file that size is refused);
    an image of 4100 x 4100 costs more than the documented pixel ceiling. Arrays and files
    are refused alike, before the network sees a patch; the file's error names it."""
    from ssimae.core.window import MAX_PIXELS
    from ssimae.errors import BadArray, SsimaeError

    big = tmp_path / "big.png"
    Image.new("L", (4100, 4100)).save(big)
    for det in detectors:
        for shape in ((20000, 20000), (4100, 4100)):
            with pytest.raises(BadArray, match=f"limit of {MAX_PIXELS}"):
                det.predict(np.broadcast_to(np.float32(0.5), shape))  # no memory behind it
        with pytest.raises(SsimaeError, match=f"limit of {MAX_PIXELS}") as e:
            det.predict(big)
        assert str(big) in str(e.value)
    fine = np.full((300, 200), 0.5, np.float32)  # the ceiling is no obstacle to a normal image:
    with pytest.raises(AssertionError, match="reached the network"):
        detectors[0].predict(fine)


def test_an_export_whose_resize_costs_more_than_the_ceiling_is_refused_at_load(export_dir, tmp_path):
    """Cause 11: an export with ``preprocess.size`` [16384, 16384] (the documented side
    ceiling) gave nothing for one 256 x 256 image in 90 s; a size at stride 1 whose patches
    exceed the patch ceiling is refused too."""
    from ssimae.core.window import MAX_PATCHES
    from ssimae.errors import SsimaeError
    from ssimae.runtime import OnnxDetector

    for edit, needle in ((lambda i: i["inference"]["preprocess"].update(size=[16384, 16384], scale=None), "pixels"),
                         (lambda i: (i["inference"]["preprocess"].update(size=[1024, 1024], scale=None),
                                     i["inference"].update(stride=1)), f"limit of {MAX_PATCHES}")):
        path = tampered(export_dir, tmp_path, edit)
        with pytest.raises(SsimaeError) as e:
            OnnxDetector.load(path)
        assert needle in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("name, model, params, needle", [
    ("mask-seed", "inpaint", {"mask_seed": 2**70}, "inpaint mask_seed"),
    ("ssim-weight-inf", "inpaint", {"ssim_weight": 1e400}, "inpaint ssim_weight"),
    ("msgms-weight-negative", "inpaint", {"msgms_weight": -1.0}, "inpaint msgms_weight"),
    ("seg-weight-inf", "draem", {"seg_weight": 1e400}, "draem seg_weight"),
])
def test_model_parameters_are_checked_before_any_work(demo_root, trained_run, tmp_path, capsys, name, model, params,
                                                      needle):
    """Cause 14: inpaint ``params.mask_seed`` 2**70 in ``--config`` trained the whole run,
    then a ValueError traceback (predict and export of that run too); ``ssim_weight: inf``
    trained, then said the last good checkpoint is kept when there was none. Refused with
    one line before any folder, from a --config file and from a checkpoint alike."""
    import torch

    cfg = write_config(tmp_path / f"{name}.json", lambda d: d["train"].update(model=model, params=params))
    out = tmp_path / "never"
    assert main(["train", "--config", str(cfg), "--data", str(demo_root), "--out", str(out), *TINY]) == 2
    one_error_line(capsys, needle)
    assert not out.exists()
    run = tmp_path / "run"  # the same parameters in a checkpoint: predict and export refuse it in one line
    shutil.copytree(trained_run, run)
    ckpt = torch.load(run / "model.pt", weights_only=True)
    settings = json.loads(ckpt["settings"])
    settings["train"].update(model=model, params=params)
    ckpt["settings"] = json.dumps(settings)
    torch.save(ckpt, run / "model.pt")
    for argv in (["predict", str(run), str(demo_root / "test" / "good"), "--out", str(tmp_path / "p"), "--quiet"],
                 ["export", str(run), "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        one_error_line(capsys, "model.pt", needle)
        assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()
