"""ssimae serve (#22): the real server (uvicorn on a free 127.0.0.1 port, as a subprocess or a
thread) called over HTTP, against ``ssimae predict`` on the same images.

Reference: the predictions.jsonl rows, masks and overlays that ``ssimae predict`` writes for
the demo test images at a threshold between their scores (so both verdicts occur); the
server must return the same rows and PNGs, with the torch engine and with the ONNX engine in
a process where importing torch fails. The server batches other images together than predict
does, so scores are compared within :data:`tests.helpers.floats.RESIDUAL_RTOL` (float32 sums in
another order; argued there) and masks, overlays, regions and verdicts exactly, except at the
pixels (or the images) whose opened residual (or score) lies within that tolerance of its
threshold (:func:`margins`).
"""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

httpx = pytest.importorskip("httpx", reason="the server tests need httpx (in the [test] extra)")
pytest.importorskip("fastapi", reason="ssimae serve needs fastapi (pip install 'ssimae[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="ssimae serve needs uvicorn (pip install 'ssimae[serve]')")

from tests.helpers.clicheck import one_error_line  # noqa: E402
from tests.helpers.floats import close, flippable, near  # noqa: E402
from tests.helpers.paths import SRC  # noqa: E402
from ssimae._version import __version__  # noqa: E402
from ssimae.cli.main import main  # noqa: E402
from ssimae.core.morphology import gray_opening  # noqa: E402
from ssimae.inference.detector import Detector  # noqa: E402
from ssimae.serve.app import create_app  # noqa: E402
from ssimae.serve.options import ServeOptions  # noqa: E402
from ssimae.serve.server import MAX_HEADER_BYTES, make_server  # noqa: E402

pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

NO_TORCH = "import sys; sys.modules['torch'] = None; from ssimae.serve.command import main; sys.exit(main(sys.argv[1:]))"


# --- references: ssimae predict on the demo test images ----------------------------------------

@pytest.fixture(scope="module")
def images(demo_root):
    """{relative path: PNG bytes} of the demo test images."""
    test = demo_root / "test"
    return {p.relative_to(test).as_posix(): p.read_bytes() for p in sorted(test.rglob("*.png"))}


@pytest.fixture(scope="module")
def threshold(trained_run, demo_root):
    """A threshold between the images' scores: some defective, some not."""
    det = Detector.load(trained_run, "cpu")
    scores = sorted(p.score for p in det.predict_many(sorted((demo_root / "test").rglob("*.png"))))
    t = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    assert scores[0] < t < scores[-1]
    return t


@pytest.fixture(scope="module")
def margins(trained_run, demo_root, images, threshold):
    """{relative path: (pixels whose mask may flip, whether the verdict may flip)} under the
    rounding tolerance, from the torch engine's opened residual maps (the ONNX engine agrees
    with it far inside the tolerance: tests/unit/inference/test_runtime.py)."""
    det = Detector.load(trained_run, "cpu")
    out = {}
    for rel in images:
        p = det.predict(demo_root / "test" / rel, threshold=threshold)
        opened = gray_opening(p.residual, det.opening_diameter)
        verdict_flips = p.image_threshold is not None and near(p.score, p.image_threshold)
        out[rel] = (flippable(opened, threshold), verdict_flips)
    assert not all(f.any() for f, _ in out.values())  # the comparison stays exact for most images
    return out


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the onnx engine needs onnxruntime (pip install 'ssimae[onnx]')")
    pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install 'ssimae[onnx]')")
    out = tmp_path_factory.mktemp("serve-export") / "deploy"
    assert main(["export", str(trained_run), "--out", str(out)]) == 0
    return out


def predict_reference(source, demo_root, out, threshold, engine="torch"):
    """{relative path: (row, mask PNG path, overlay PNG path)} written by ``ssimae predict``."""
    assert main(["predict", str(source), str(demo_root / "test"), "--out", str(out), "--threshold", repr(threshold),
                 "--engine", engine, "--quiet"]) == 0
    rows = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        base = out / Path(row["path"]).with_suffix("")
        rows[row["path"]] = (row, Path(f"{base}_mask.png"), Path(f"{base}_overlay.png"))
    return rows


@pytest.fixture(scope="module")
def reference(trained_run, demo_root, threshold, tmp_path_factory):
    rows = predict_reference(trained_run, demo_root, tmp_path_factory.mktemp("ref-torch"), threshold)
    assert {r["defective"] for r, _, _ in rows.values()} == {True, False}
    return rows


# --- running the server -------------------------------------------------------------------------

def wait_until(condition, timeout=60.0, what="condition"):
    """Poll ``condition()`` until it is true (a state, not a duration, is what is waited for)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} never became true")
        time.sleep(0.01)


class ThreadServer:
    """``with ThreadServer(app) as url:`` uvicorn serving ``app`` on a free 127.0.0.1 port, in a
    thread; given the app's ``options``, set up as ``ssimae serve`` sets it up (make_server)."""

    def __init__(self, app, options=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")) if options is None \
            else make_server(app, options, quiet=True)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), what="server start")
        assert self.server.started
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def cli_server(argv, timeout=120.0):
    """(process, url) of a server started as a command (``--port 0``), once /healthz answers."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, *argv, "--port", "0", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.communicate(timeout=30)[1][-3000:]}")
    url = "http://" + line.split("http://")[1].split("/")[0]

    def healthy():
        try:
            return httpx.get(url + "/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate(timeout=30)[1][-3000:]
            return False

    wait_until(healthy, timeout, "the server answering /healthz")
    return proc, url


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def post(url, data, name=None, query="", **kw):
    """POST an image: as the multipart field ``file`` when ``name`` is given, else as the raw body."""
    files = {"file": (name, data, "image/png")} if name else None
    return httpx.post(f"{url}/v1/predict{query}", files=files, content=None if name else data, timeout=120, **kw)


MASK_KEYS = ("defect_area", "n_regions", "regions")  # what the mask decides


def same_row(got: dict, ref: dict, name: str, margin) -> None:
    """The server's JSON is predict's row (path aside: the client's file name), plus model and residual;
    minus the label, outcome and source, which come from predict's input files (a request has none).
    ``margin``: the image's entry of :func:`margins`; the mask's fields and the verdict are
    compared only where they cannot flip by rounding (``regions_are`` follows the verdict;
    ``score_norm``, the score over the same stored threshold, is compared like the score)."""
    mask_flips, verdict_flips = margin
    skip = {"label", "outcome", "source"} | (set(MASK_KEYS) if mask_flips.any() else set())
    skip |= {"defective", "regions_are"} if verdict_flips else set()
    ref = {k: v for k, v in ref.items() if k not in skip}  # source: a server file
    close({k: v for k, v in got.items() if k not in skip}, {**ref, "path": name, "model": "ssim", "residual": "ssim"})


def same_png(got: np.ndarray, ref: np.ndarray, flips: np.ndarray, reach: int = 0) -> None:
    """Equal PNG pixels, except within ``reach`` pixels of a pixel whose mask value may flip
    (an overlay's outline reaches 1 pixel beyond the mask)."""
    assert got.shape == ref.shape
    if reach:
        flips = ndi.binary_dilation(flips, np.ones((2 * reach + 1,) * 2, bool))
    assert np.array_equal(got[~flips], ref[~flips])


def pixels(data_or_path) -> np.ndarray:
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    return np.asarray(Image.open(src))


# --- the server against ssimae predict ----------------------------------------------------------

@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_server_matches_predict(engine, trained_run, demo_root, images, threshold, reference, margins, tmp_path,
                                request):
    """Rows, masks and overlays equal predict's, for requests sent one by one and all at once;
    the onnx server runs in a process where importing torch fails."""
    if engine == "torch":
        argv, ref = ["-m", "ssimae.cli", "serve", str(trained_run)], reference
    else:
        exported = request.getfixturevalue("exported")
        argv = ["-c", NO_TORCH, str(exported)]
        ref = predict_reference(exported, demo_root, tmp_path / "ref", threshold, "onnx")
    proc, url = cli_server([*argv, "--threshold", repr(threshold)])
    try:
        model = httpx.get(url + "/v1/model").json()
        assert model["engine"] == engine and model["model"] == "ssim" and model["title"] == "SSIM-AE"
        assert model["pixel_threshold"] == threshold and model["version"] == __version__ and model["channels"] == 1
        assert model["image_threshold"] == Detector.load(trained_run, "cpu").settings.image_threshold  # decides
        assert model["settings"]["stride"] == 30 and model["limits"] == ServeOptions().limits()
        for rel, data in images.items():
            row, mask, overlay = ref[rel]
            same_row(post(url, data, name=Path(rel).name).json(), row, Path(rel).name, margins[rel])
            r = post(url, data, query="?mask=png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            same_png(pixels(r.content), pixels(mask), margins[rel][0])
            same_png(pixels(post(url, data, query="?overlay=png").content), pixels(overlay), margins[rel][0], 1)
        with ThreadPoolExecutor(len(images)) as pool:  # all at once: batched, same answers
            answers = list(pool.map(lambda item: post(url, item[1]), images.items()))
        for rel, r in zip(images, answers):
            assert r.status_code == 200
            same_row(r.json(), ref[rel][0], "", margins[rel])
        health = httpx.get(url + "/healthz").json()
        assert health["status"] == "ok" and health["images"] == 4 * len(images) and health["pending"] == 0
    finally:
        stop(proc)


@pytest.fixture
def detector(trained_run):
    return Detector.load(trained_run, "cpu")


class Gate:
    """Wraps a detector's predict_many: records how many images each call gets; calls wait
    until ``release`` is set (the test hook that makes the detector slow)."""

    def __init__(self, detector):
        self.calls, self.entered, self.release = [], threading.Event(), threading.Event()
        inner = detector.predict_many

        def predict_many(images, *args, **kw):
            self.calls.append(len(images))
            self.entered.set()
            assert self.release.wait(120)
            return inner(images, *args, **kw)

        detector.predict_many = predict_many


def test_concurrent_requests_are_batched(detector, images, reference, margins, threshold):
    """While one image is in the network, four more arrive; they go through in one
    predict_many call of four images, and each answer is still predict's row."""
    gate = Gate(detector)
    app = create_app(detector, ServeOptions(threshold=threshold, max_batch_images=8, queue_size=16))
    names = list(images)
    with ThreadServer(app) as url, ThreadPoolExecutor(5) as pool:
        first = pool.submit(post, url, images[names[0]])
        assert gate.entered.wait(60)
        rest = [pool.submit(post, url, images[n]) for n in names[1:5]]
        wait_until(lambda: app.state.batcher.queued == 4, what="four requests queued")
        gate.release.set()
        answers = [first.result(), *(f.result() for f in rest)]
    assert gate.calls == [1, 4]
    assert (app.state.batcher.batches, app.state.batcher.images) == (2, 5)
    for name, r in zip(names, answers):
        assert r.status_code == 200
        same_row(r.json(), reference[name][0], "", margins[name])


def test_full_queue_gets_503_with_retry_after(detector, images, reference, margins, threshold):
    """Queue of 1, batches of 1: one request in the network, one waiting, the third is
    refused at once with 503 and Retry-After; the first two are answered."""
    gate = Gate(detector)
    app = create_app(detector, ServeOptions(threshold=threshold, max_batch_images=1, queue_size=1))
    name, data = next(iter(images.items()))
    with ThreadServer(app) as url, ThreadPoolExecutor(2) as pool:
        a = pool.submit(post, url, data)
        assert gate.entered.wait(60)
        b = pool.submit(post, url, data)
        wait_until(lambda: app.state.batcher.queued == 1, what="the second request queued")
        r = post(url, data)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.text.count("\n") == 0 and "busy" in r.json()["error"]
        gate.release.set()
        assert a.result().status_code == b.result().status_code == 200
        r = post(url, data)  # served again once the backlog is gone
        assert r.status_code == 200
        same_row(r.json(), reference[name][0], "", margins[name])
    assert gate.calls == [1, 1, 1]


# --- bad input ----------------------------------------------------------------------------------

def png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def blank_png(mode, size) -> bytes:
    """A highly compressible PNG of ``size`` (W, H): a decompression bomb for large sizes."""
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def huge_png_header(width, height) -> bytes:
    """A PNG that claims ``width`` x ``height`` 1-bit pixels in its header and holds a few
    compressed rows: past Pillow's own decompression-bomb limit, built without the work."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(bytes(1 + width // 8) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def multipart(boundary, body):
    return {"content": body, "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"}}


LIMITS = ServeOptions(max_bytes=1_000_000, max_pixels=200_000)
GOOD = "good/000.png"
# case: (request keyword arguments from the images, expected status, words of the error)
BAD = {
    "not-an-image": (lambda im: {"content": b"GIF? no: plain text, not an image"}, 415, "not an image"),
    "truncated-png": (lambda im: {"content": im[GOOD][:len(im[GOOD]) // 2]}, 400, "truncated or corrupt"),
    "empty-body": (lambda im: {"content": b""}, 400, "empty body"),
    "tiff-stack": (lambda im: {"content": _tiff_stack()}, 400, "not a stack"),
    "too-many-bytes": (lambda im: {"content": bytes(1_000_001)}, 413, "larger than the limit of 1000000 bytes"),
    "too-many-bytes-streamed": (lambda im: {"content": iter([bytes(400_000)] * 3)}, 413, "larger than the limit"),
    "too-many-pixels": (lambda im: {"content": png(np.zeros((500, 500), np.uint8))}, 413,
                        "250000 pixels, more than the limit of 200000"),
    "decompression-bomb": (lambda im: {"content": blank_png("L", (3000, 3000))}, 413, "9000000 pixels"),
    "pillow-bomb": (lambda im: {"content": huge_png_header(30000, 30000)}, 413, "decompression bomb"),
    "wrong-channels": (lambda im: {"content": npy(np.zeros((40, 40, 2), np.float32))}, 400,
                       "this run reads gray images"),
    "npy-out-of-range": (lambda im: {"content": npy(np.full((40, 40), 2.0, np.float32))}, 400, "in [0, 1]"),
    "npy-not-float": (lambda im: {"content": npy(np.zeros((40, 40), np.int64))}, 400, "floats"),
    "multipart-without-file": (lambda im: multipart("xyz", b'--xyz\r\nContent-Disposition: form-data; name="note"'
                                                           b"\r\n\r\nhello\r\n--xyz--\r\n"), 400, "form field 'file'"),
    "malformed-multipart": (lambda im: multipart("xyz", b"--xyz\r\nno headers end"), 400, "multipart"),
    "bad-query": (lambda im: {"content": im[GOOD], "params": {"mask": "jpg"}}, 400, "must be png"),
}


def _tiff_stack() -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((5, 40, 40), np.uint8), photometric="minisblack")
    return buf.getvalue()


@pytest.fixture(scope="module")
def limited_server(trained_run, threshold):
    app = create_app(Detector.load(trained_run, "cpu"), LIMITS)
    with ThreadServer(app) as url:
        yield url


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_the_server_keeps_serving(case, limited_server, images, trained_run, demo_root):
    make, status, words = BAD[case]
    r = httpx.post(limited_server + "/v1/predict", timeout=60, **make(images))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and r.text.count("\n") == 0
    body = r.json()
    assert list(body) == ["error"] and words in body["error"], body
    for server_path in (str(trained_run), str(demo_root), str(SRC), "Traceback"):  # nothing names a file here
        assert server_path not in r.text
    assert post(limited_server, images[GOOD]).status_code == 200


def test_api_key(trained_run, images):
    app = create_app(Detector.load(trained_run, "cpu"), ServeOptions(api_key="s3cret key"))
    with ThreadServer(app) as url:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": "s3cret"}):
            r = post(url, images[GOOD], headers=headers)
            assert r.status_code == 401 and r.json() == {"error": "missing or wrong API key (header X-API-Key)"}
        assert httpx.get(url + "/v1/model").status_code == 401
        assert post(url, images[GOOD], headers={"X-API-Key": "s3cret key"}).status_code == 200
        assert httpx.get(url + "/v1/model", headers={"X-API-Key": "s3cret key"}).status_code == 200
        assert httpx.get(url + "/healthz").status_code == 200  # open: for load balancers
        page = httpx.get(url + "/")
        assert page.status_code == 200 and 'id="key"' in page.text


def test_unknown_routes_are_one_line(limited_server):
    r = httpx.get(limited_server + "/etc/passwd")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = httpx.get(limited_server + "/v1/predict")
    assert r.status_code == 405 and r.text.count("\n") == 0


# --- the command line ---------------------------------------------------------------------------

def test_cli_bad_sources_are_one_line(trained_run, tmp_path, capsys, monkeypatch):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    one_error_line(capsys, "nothing", "no such run folder")
    assert main(["serve", str(trained_run), "--engine", "onnx"]) == 2
    one_error_line(capsys, "model.onnx")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(trained_run), "--port", str(taken.getsockname()[1])]) == 2
        one_error_line(capsys, "cannot listen on 127.0.0.1")
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", str(trained_run)]) == 2
    one_error_line(capsys, "pip install 'ssimae[serve]'", "uvicorn")


# --- the page in headless Chromium --------------------------------------------------------------

def test_page_shows_verdict_and_overlay_in_headless_chromium(detector, images, reference, threshold, tmp_path):
    """Choose the most defective image in the page's file input; the screenshot shows the
    red "defective" verdict and, pixel for pixel, the overlay the API returns. The file
    name (with HTML in it) is shown as text."""
    from tests.helpers.cdp import Browser

    rel = max(reference, key=lambda k: reference[k][0]["score"])
    assert reference[rel][0]["defective"]
    upload = tmp_path / "<img src=x onerror=alert(1)>.png"
    upload.write_bytes(images[rel])
    app = create_app(detector, ServeOptions(threshold=threshold))
    with ThreadServer(app) as url, Browser(tmp_path / "profile", (800, 700)) as b:
        b.open(url + "/")
        b.choose_file("#file", upload)
        b.wait_for("document.body.dataset.state === 'done'")
        assert b.evaluate("document.getElementById('verdict').textContent") == "defective"
        details = b.evaluate("document.getElementById('details').textContent")
        assert details.startswith(upload.name + ": score ") and b.evaluate("document.images.length") == 1
        rects = b.evaluate("JSON.stringify(['verdict', 'overlay'].map((id) => "
                           "document.getElementById(id).getBoundingClientRect()))")
        shot = pixels(b.screenshot())[..., :3].astype(int)
        overlay = pixels(post(url, images[rel], query="?overlay=png").content).astype(int)
    verdict, img = ({k: round(v) for k, v in r.items()} for r in json.loads(rects))
    inside = shot[verdict["top"] + 3:verdict["bottom"] - 3, verdict["left"] + 3:verdict["right"] - 3]
    red = np.abs(inside - [198, 40, 40]).max(axis=2) <= 8  # the "defective" box (#c62828)
    assert red.mean() > 0.6, red.mean()  # its background; the rest is its white text
    crop = shot[img["top"]:img["top"] + overlay.shape[0], img["left"]:img["left"] + overlay.shape[1]]
    assert crop.shape == overlay.shape and np.abs(crop - overlay).max() <= 2


def test_page_shows_the_threshold_that_decides_one_request_per_drop_no_alt_text(detector, images, tmp_path):
    """Before the first image nothing is shown (no broken-image alt text, no empty verdict
    box); each chosen image costs one request (the batcher's count of images scored); the
    threshold the page shows is the one that decides: the run's image threshold, with the
    score compared to it in the verdict's direction, and the same on the page's first line."""
    from tests.helpers.cdp import Browser

    image_t = detector.settings.image_threshold
    scores = {rel: detector.predict(decode(data)).score for rel, data in images.items()}
    passed, found = min(scores, key=scores.get), max(scores, key=scores.get)
    pixel_t = scores[passed] / 2  # a pixel threshold far below the image one: they would disagree on `passed`
    assert scores[passed] <= image_t < scores[found] and pixel_t < scores[passed]
    app = create_app(detector, ServeOptions(threshold=pixel_t))
    with ThreadServer(app) as url, Browser(tmp_path / "profile", (800, 700)) as b:
        b.open(url + "/")
        hidden = "['overlay', 'verdict'].map((id) => getComputedStyle(document.getElementById(id)).display)"
        assert b.evaluate(f"JSON.stringify({hidden})") == '["none","none"]'
        assert b.evaluate("document.getElementById('overlay').getBoundingClientRect().height") == 0
        assert f"image threshold {image_t:.6g}" in b.evaluate("document.getElementById('model').textContent")
        for n, (rel, verdict) in enumerate(((passed, "no defect"), (found, "defective")), start=1):
            upload = tmp_path / f"{n}-{Path(rel).name}"  # a new file each time: the input's change event
            upload.write_bytes(images[rel])
            b.evaluate("document.body.dataset.state = ''")
            b.choose_file("#file", upload)
            b.wait_for("document.body.dataset.state === 'done'")
            assert app.state.batcher.images == n  # one request per image
            assert b.evaluate("document.getElementById('verdict').textContent") == verdict
            details = b.evaluate("document.getElementById('details').textContent")
            sign = " > " if verdict == "defective" else " <= "
            assert f"score {scores[rel]:.6g}{sign}image threshold {image_t:.6g}" in details
            if verdict == "no defect":
                assert "below the verdict threshold" in details  # its regions at the low pixel threshold
            assert b.evaluate("getComputedStyle(document.getElementById('overlay')).display") == "block"


def decode(data: bytes) -> np.ndarray:
    from ssimae.io.images import decode_image

    return decode_image(data)


def test_every_answer_says_nosniff(limited_server, images):
    for r in (httpx.get(limited_server + "/"), httpx.get(limited_server + "/nothing"), post(limited_server, b"x"),
              post(limited_server, images[GOOD])):
        assert r.headers["x-content-type-options"] == "nosniff"


# --- adversarial pass 3 -----------------------------------------------------------------------------

def one_json_line(r, status, words):
    """The answer is ``status`` with one line of JSON {"error": ...} holding ``words``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and r.text.count("\n") == 0, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"], r.text


def test_a_multipart_boundary_over_256_characters_is_400_json(limited_server, images):
    """Cause 16: python-multipart refuses a boundary over 256 characters with its own
    FormParserError, which came back as 500."""
    boundary = "b" * 300
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n').encode() \
        + images[GOOD] + f"\r\n--{boundary}--\r\n".encode()
    r = httpx.post(limited_server + "/v1/predict", timeout=60, **multipart(boundary, body))
    one_json_line(r, 400, "boundary")
    assert post(limited_server, images[GOOD]).status_code == 200


def test_a_multipage_tiff_whose_pages_differ_in_size_is_400(limited_server):
    """Cause 20: scored on its first page only."""
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(np.zeros((40, 40), np.uint8))
        tif.write(np.zeros((60, 50), np.uint8))
    one_json_line(httpx.post(limited_server + "/v1/predict", content=buf.getvalue(), timeout=60), 400, "multi-page TIFF")


def test_an_empty_api_key_is_refused(trained_run, capsys, monkeypatch):
    """Cause 12: ``--host 0.0.0.0 --api-key ""`` turned authentication off, said "API key not
    required" and suppressed the warning about 0.0.0.0. An empty or blank key (option or
    environment variable) is refused with one line before anything is loaded or bound (a
    taken port here: the old code got as far as binding)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for argv, env in ((["--api-key", ""], None), (["--api-key", "  "], "set"), ([], "")):
            if env is None:
                monkeypatch.delenv("SSIMAE_API_KEY", raising=False)
            else:
                monkeypatch.setenv("SSIMAE_API_KEY", env)
            assert main(["serve", str(trained_run), "--port", port, *argv]) == 2
            one_error_line(capsys, "--api-key is empty" if argv else "SSIMAE_API_KEY is empty")
    with pytest.raises(ValueError, match="empty"):
        ServeOptions(api_key="")


def raw_exchange(url, data: bytes, timeout=20.0) -> bytes:
    """What the server sends back on one connection to ``data`` until it closes it (an
    AssertionError when it keeps it open longer than ``timeout`` seconds)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s, timeout)


def read_until_closed(sock, timeout) -> bytes:
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise AssertionError(f"the connection was still open after {timeout} s: {b''.join(chunks)[:200]!r}")
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parsed(answer: bytes) -> tuple[int, dict, bytes]:
    """(status, headers in lower case, body) of a raw HTTP/1.1 answer without chunked coding."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def one_json_error(answer: bytes, status: int, words: str = "") -> None:
    code, headers, body = parsed(answer)
    assert code == status and headers["content-type"] == "application/json", answer[:300]
    assert body.count(b"\n") == 0 and list(json.loads(body)) == ["error"] and words in json.loads(body)["error"], body


SLOW_BODY = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 27227\r\n\r\nx"


def test_slow_body_clients_do_not_starve_others(detector, images, threshold):
    """Cause 10: the server took an admission place before reading the body and had no
    body-read timeout: sockets that send ``Content-Length: 27227`` and one byte made every
    other client get 503 for as long as they lasted, and none was closed. Capacity 2 here,
    5 such sockets: another client is served at once; each slow socket gets 408 JSON and is
    closed after the request timeout; a socket that never finishes its headers is closed too."""
    options = ServeOptions(threshold=threshold, max_batch_images=1, queue_size=1, request_timeout_s=2.0)
    app = create_app(detector, options)
    server = ThreadServer(app, options)
    with server as url:
        host, port = url.removeprefix("http://").split(":")
        slow = [socket.create_connection((host, int(port)), timeout=30) for _ in range(5)]
        headers_only = socket.create_connection((host, int(port)), timeout=30)
        try:
            for s in slow:
                s.sendall(SLOW_BODY)
            headers_only.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len")
            wait_until(lambda: len(server.server.server_state.tasks) == 5, what="the five slow requests started")
            started = time.monotonic()
            r = post(url, images[GOOD])
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 2.0  # served while the slow ones still wait
            for s in slow:
                one_json_error(read_until_closed(s, 20.0), 408, "did not arrive within 2 s")
            assert read_until_closed(headers_only, 20.0) == b""
        finally:
            for s in (*slow, headers_only):
                s.close()
        assert app.state.batcher.pending == 0


@pytest.fixture(scope="module")
def served(trained_run, threshold):
    """(url, options) of a server set up as ``ssimae serve`` sets it up (make_server), in a thread."""
    options = ServeOptions(threshold=threshold, request_timeout_s=5.0)
    with ThreadServer(create_app(Detector.load(trained_run, "cpu"), options), options) as url:
        yield url


REQUEST = b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
PROTOCOL_ERRORS = {
    "bad-content-length": REQUEST + b"Content-Length: abc\r\n\r\n",
    "duplicate-content-length": REQUEST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    "garbage-request-line": b"GARBAGE GARBAGE GARBAGE GARBAGE\r\n\r\n",
    "0xff-bytes": b"\xff" * 64 + b"\r\n\r\n",
    "bad-chunk-size": REQUEST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "unknown-transfer-coding": REQUEST + b"Transfer-Encoding: gzip\r\n\r\nabc",
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_http_protocol_errors_are_one_line_of_json(served, images, case):
    """Cause 23: requests that uvicorn cannot parse came back as its text/plain "Invalid HTTP
    request received."; now 400 with one line of JSON, the connection closed, and the server
    goes on serving."""
    one_json_error(raw_exchange(served, PROTOCOL_ERRORS[case]), 400, "malformed HTTP request")
    assert post(served, images[GOOD]).status_code == 200


def test_head_requests_are_answered(served):
    """Cause 23: ``HEAD /`` gave 405 (load balancers and link checkers send it)."""
    for path in ("/", "/healthz"):
        r = httpx.head(served + path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code)
    assert httpx.head(served + "/").headers["content-type"].startswith("text/html")


def header_block(size: int) -> bytes:
    """``GET /healthz`` whose request line and headers (the empty line included) are ``size`` bytes."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: "
    return head + b"a" * (size - len(head) - 4) + b"\r\n\r\n"


def test_request_headers_are_bounded(served):
    """uvicorn accepted 70 KB of headers arriving at once as a valid request. The documented
    bound (docs/deploy.md: 16 KiB for the request line and headers) holds to the byte, whether
    the block arrives at once or in pieces that never finish it; 431 with one line of JSON, the
    connection closed, and the server goes on serving."""
    assert MAX_HEADER_BYTES == 16 * 1024
    assert [len(header_block(n)) for n in (16_384, 16_385, 70_000)] == [16_384, 16_385, 70_000]
    code, _, body = parsed(raw_exchange(served, header_block(16_384)))
    assert code == 200 and json.loads(body)["status"] == "ok", body
    for size in (16_385, 70_000):
        one_json_error(raw_exchange(served, header_block(size)), 431, "over the limit of 16384 bytes")
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(header_block(70_000)[:1000])
        for _ in range(16):  # 17,000 bytes of headers that never end, the last piece over the bound
            time.sleep(0.01)  # (none after it: unread bytes would make the close a reset)
            s.sendall(b"a" * 1000)
        one_json_error(read_until_closed(s, 20.0), 431, "over the limit of 16384 bytes")
    assert httpx.get(served + "/healthz").status_code == 200


def test_what_an_admitted_image_may_cost_is_bounded(detector, images, threshold):
    """Cause 11: a 16 KB PNG of 4096 x 4096 (inside the old default --max-pixels) took 161 s
    and 2.4 GB, and 8 such images were batched. By default it is refused from its header
    (413); an image within the pixels but over --max-patches is refused before the network;
    and a batch never costs more than one image may: with a budget of two images' patches,
    four images that arrive together go through in two calls of two."""
    r = post_app(detector, ServeOptions(threshold=threshold), blank_png("L", (4096, 4096)))
    assert r.status_code == 413 and "4000000" in r.json()["error"], r.text
    r = post_app(detector, ServeOptions(threshold=threshold, max_patches=3), images[GOOD])
    assert r.status_code == 413 and "patches at stride 30, more than the limit of 3" in r.json()["error"], r.text
    shape = pixels(images[GOOD]).shape
    cost = detector.settings.preprocess.cost(shape, detector.settings.stride)
    gate = Gate(detector)
    app = create_app(detector, ServeOptions(threshold=threshold, max_batch_images=8, queue_size=16,
                                            max_pixels=2 * cost[0], max_patches=2 * cost[1]))
    with ThreadServer(app) as url, ThreadPoolExecutor(5) as pool:
        first = pool.submit(post, url, images[GOOD])
        assert gate.entered.wait(60)
        rest = [pool.submit(post, url, images[GOOD]) for _ in range(4)]
        wait_until(lambda: app.state.batcher.queued == 4, what="four requests queued")
        gate.release.set()
        assert all(f.result().status_code == 200 for f in [first, *rest])
    assert gate.calls == [1, 2, 2]


def post_app(detector, options, data):
    """One POST of ``data`` to a server of ``detector`` with ``options``."""
    with ThreadServer(create_app(detector, options)) as url:
        return post(url, data)


SLOW_SCORING = """
import sys, time
from ssimae.inference.detector import Detector
inner = Detector.predict_many
def slow(self, images, *args, **kw):  # a batch that takes longer than the shutdown's grace
    print(f"scoring {len(images)} image(s)", file=sys.stderr, flush=True)
    time.sleep(60)
    return inner(self, images, *args, **kw)
Detector.predict_many = slow
from ssimae.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_refuses_in_flight_work_with_json_and_exits_quickly(trained_run, images):
    """Cause 13: SIGTERM during requests longer than 10 s gave text/plain 500s, CancelledError
    tracebacks, a worker that went on scoring the cancelled batch, and an exit after 42 s.
    One request in the network, one queued, a grace of 1 s: both are answered 503 with one
    line of JSON, the queued one is never scored, nothing is cancelled midway (no traceback),
    and the process is gone within seconds."""
    proc, url = cli_server(["-c", SLOW_SCORING, "serve", str(trained_run), "--max-batch-images", "1",
                            "--shutdown-grace", "1"])
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = [pool.submit(post, url, images[GOOD]) for _ in range(2)]
            wait_until(lambda: httpx.get(url + "/healthz").json()["pending"] == 2, what="two requests admitted")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for answer in answers:
                r = answer.result()
                assert r.status_code == 503 and r.headers["content-type"] == "application/json", r.text
                assert r.text.count("\n") == 0 and "shutting down" in r.json()["error"]
            proc.wait(30)
            elapsed = time.monotonic() - started
    finally:
        stop(proc)
    err = proc.stderr.read()
    assert elapsed < 6, elapsed
    assert "Traceback" not in err and "CancelledError" not in err and "Exception in ASGI" not in err, err[-3000:]
    assert err.count("scoring 1 image(s)") == 1, err[-3000:]
