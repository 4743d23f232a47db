"""ssimae serve (#22): the real server (uvicorn on a free 127.0.0.1 port, as a subprocess or a
thread) called over HTTP, against ``ssimae predict`` on the same images.

Reference: the predictions.jsonl rows, masks and overlays that ``ssimae predict`` writes for
the demo test images at a threshold between their scores (so both verdicts occur); the
server must return identical rows (scores equal to the last bit) and identical PNGs, with
the torch engine and with the ONNX engine in a process where importing torch fails.
"""
import io
import json
import os
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

httpx = pytest.importorskip("httpx", reason="the server tests need httpx (in the [test] extra)")
pytest.importorskip("fastapi", reason="ssimae serve needs fastapi (pip install 'ssimae[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="ssimae serve needs uvicorn (pip install 'ssimae[serve]')")

from tests.helpers.clicheck import one_error_line  # noqa: E402
from tests.helpers.paths import SRC  # noqa: E402
from ssimae._version import __version__  # noqa: E402
from ssimae.cli.main import main  # noqa: E402
from ssimae.inference.detector import Detector  # noqa: E402
from ssimae.serve.app import create_app  # noqa: E402
from ssimae.serve.options import ServeOptions  # noqa: E402

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
    """``with ThreadServer(app) as url:`` uvicorn serving ``app`` on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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


def same_row(got: dict, ref: dict, name: str) -> None:
    """The server's JSON is predict's row (path aside: the client's file name), plus model and residual;
    minus the label, outcome and source, which come from predict's input files (a request has none)."""
    ref = {k: v for k, v in ref.items() if k not in ("label", "outcome", "source")}  # source: a server file
    assert got == {**ref, "path": name, "model": "ssim", "residual": "ssim"}


def pixels(data_or_path) -> np.ndarray:
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    return np.asarray(Image.open(src))


# --- the server against ssimae predict ----------------------------------------------------------

@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_server_matches_predict(engine, trained_run, demo_root, images, threshold, reference, tmp_path, request):
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
            same_row(post(url, data, name=Path(rel).name).json(), row, Path(rel).name)
            r = post(url, data, query="?mask=png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            assert np.array_equal(pixels(r.content), pixels(mask))
            assert np.array_equal(pixels(post(url, data, query="?overlay=png").content), pixels(overlay))
        with ThreadPoolExecutor(len(images)) as pool:  # all at once: batched, same answers
            answers = list(pool.map(lambda item: post(url, item[1]), images.items()))
        for rel, r in zip(images, answers):
            assert r.status_code == 200
            same_row(r.json(), ref[rel][0], "")
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


def test_concurrent_requests_are_batched(detector, images, reference, threshold):
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
        same_row(r.json(), reference[name][0], "")


def test_full_queue_gets_503_with_retry_after(detector, images, reference, threshold):
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
        same_row(r.json(), reference[name][0], "")
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
