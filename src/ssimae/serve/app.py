"""The HTTP API of ``ssimae serve`` as a FastAPI application (:func:`create_app`).

Endpoints (JSON unless said otherwise; every error is one line ``{"error": "..."}``):

* ``POST /v1/predict``: one image, as the raw body (any ``Content-Type``) or the
  multipart form field ``file`` (:mod:`ssimae.serve.decode`) -> the image's row of
  ``predictions.jsonl`` as ``ssimae predict`` writes it (:meth:`Prediction.record`: path =
  the client's file name or "", score, score_norm, defective, defect_area, n_regions,
  regions, regions_are, threshold, image_threshold), plus ``model`` and ``residual``.
  ``?mask=png``: the defect mask as PNG instead (255 = defect, H x W, as ``predict``'s
  ``*_mask.png``); ``?overlay=png``: the overlay (``*_overlay.png``); ``?overlay=base64``:
  the JSON row with the overlay's PNG in ``overlay_png_base64`` (one request for both: the page).
* ``GET /v1/model``: model, title, engine, residual, both thresholds at the top level
  (``image_threshold``, which decides the verdict, None for runs without one, then the pixel
  threshold decides; ``pixel_threshold``, which draws the masks), channels, the inference
  settings (without the threshold's calibration history, which names folders on the
  server), the ssimae version and the server's limits.
* ``GET /healthz``: ``{"status": "ok", ...}`` with the batcher's counters (open, no key).
* ``GET /``: a page to drop an image and see its verdict and overlay (:mod:`ssimae.serve.page`).

Status codes: 400 bad input (broken image, bad body or query, wrong channels, a request
uvicorn cannot parse), 401 missing or wrong API key (header ``X-API-Key``; compared in
constant time), 404/405 no such route, 408 the body did not arrive in time, 413 too many
bytes, pixels or patches, 415 not an image, 503 busy (with ``Retry-After``) or shutting
down, 500 an unexpected failure (logged on the server; the server keeps serving).

A request is admitted (counted against the batcher's capacity) only once its whole body
has arrived, within ``request_timeout_s``: a slow client holds no place another needs.
"""
from __future__ import annotations

import base64
import dataclasses
import hmac
import io
import logging
import asyncio
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ssimae._version import __version__
from ssimae.reporting.plots import overlay_rgb
from ssimae.errors import SsimaeError
from ssimae.serve.batcher import Batcher, Busy, ShuttingDown
from ssimae.serve.decode import RequestError, decode_upload, upload_bytes
from ssimae.serve.options import ServeOptions
from ssimae.serve.page import CONTENT_SECURITY_POLICY, render_page

log = logging.getLogger("ssimae.serve")
RETRY_AFTER_S = 1
API_KEY_HEADER = "X-API-Key"
PICTURES = ("mask", "overlay")  # ?mask=png, ?overlay=png
INLINE = "base64"  # ?overlay=base64: the JSON row with the picture inside


class ApiError(Exception):
    """An error response: ``status``, one-line ``message``, extra ``headers``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def describe(detector, threshold: float, options: ServeOptions) -> dict:
    """What ``GET /v1/model`` says about a detector served at the pixel ``threshold``."""
    settings = dataclasses.asdict(detector.settings)
    settings.pop("threshold_history", None)  # names calibration folders on this machine
    return {"model": detector.model_name, "title": detector.title,
            "engine": detector.engine, "residual": detector.default_residual,
            "image_threshold": detector.settings.image_threshold, "pixel_threshold": threshold,
            "channels": detector.settings.preprocess.channels, "settings": settings, "version": __version__,
            "limits": options.limits()}


def _png(array: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, 3) array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def picture(kind: str, image: np.ndarray, prediction) -> bytes:
    """The PNG ``ssimae predict`` writes as ``*_<kind>.png`` (kind "mask" or "overlay")."""
    if kind == "mask":
        return _png(np.where(prediction.mask, 255, 0).astype(np.uint8))
    return _png(overlay_rgb(image, prediction.mask))


def wanted_picture(query) -> tuple[str | None, bool]:
    """("mask" or "overlay", inline) for ``?mask=png``, ``?overlay=png`` or (inline, inside the
    JSON row) ``?mask=base64`` / ``?overlay=base64``; (None, False) for the JSON row alone."""
    asked = [k for k in PICTURES if k in query]
    if len(asked) > 1:
        raise ApiError(400, "ask for ?mask= or ?overlay=, not both")
    if asked and query[asked[0]] not in ("png", INLINE):
        raise ApiError(400, f"?{asked[0]}= must be png or {INLINE}, got {query[asked[0]][:40]!r}")
    return (asked[0], query[asked[0]] == INLINE) if asked else (None, False)


async def read_body(request: Request, max_bytes: int, timeout_s: float, stopping: asyncio.Event | None = None) -> bytes:
    """The request body, refused with 413 once it exceeds ``max_bytes`` (from its
    Content-Length before reading, else while it streams in), with 408 (and the connection
    closed) when it has not all arrived within ``timeout_s`` seconds, and with
    :class:`ShuttingDown` when ``stopping`` is set first."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad Content-Length header")
        if int(length) > max_bytes:
            raise ApiError(413, f"request body of {int(length)} bytes is larger than the limit of {max_bytes} bytes")
    reading = asyncio.ensure_future(_collect(request, max_bytes))
    waits = {reading} | ({asyncio.ensure_future(stopping.wait())} if stopping is not None else set())
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    if reading in done:
        return reading.result()
    if stopping is not None and stopping.is_set():
        raise ShuttingDown()
    raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s", {"Connection": "close"})


async def _collect(request: Request, max_bytes: int) -> bytes:
    """The body's chunks joined; 413 past ``max_bytes``, 400 when the client goes away."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, f"request body is larger than the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before sending the whole body") from None
    return b"".join(chunks)


class NoSniff:
    """ASGI middleware: ``X-Content-Type-Options: nosniff`` on every response (browsers
    take each answer as the type it says it is)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


def create_app(detector, options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI app serving ``detector`` (a :class:`ssimae.inference.detector.Detector` or an
    :class:`ssimae.inference.onnx_detector.OnnxDetector`; only its worker thread calls ``predict_many``).
    The batcher (``app.state.batcher``) runs while the app's lifespan does."""
    from ssimae.runs.inference_settings import NO_THRESHOLD

    options = options or ServeOptions()
    threshold = detector.threshold if options.threshold is None else options.threshold
    if threshold is None:
        raise SsimaeError(f"{NO_THRESHOLD}; give --threshold")
    threshold = float(threshold)
    model = describe(detector, threshold, options)
    preprocess = detector.settings.preprocess
    batcher = Batcher(lambda images: detector.predict_many(images, threshold, chunk=len(images)),
                      options.max_batch_images, options.max_wait_ms / 1000.0,
                      options.queue_size + options.max_batch_images, (options.max_pixels, options.max_patches))
    page = render_page(detector.title, model["engine"], threshold, detector.settings.image_threshold,
                       options.api_key is not None)
    key = None if options.api_key is None else options.api_key.encode("utf-8")

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:  # every connection is done: nobody waits for a batch still in the network
            batcher.refuse_waiting()
            batcher.stop(timeout=1.0)

    app = FastAPI(title="ssimae serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher, app.state.detector, app.state.model = batcher, detector, model

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return _error(err.status, err.message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _error(500, "internal error (logged on the server)")

    app.add_middleware(NoSniff)

    def check_key(request: Request) -> None:
        if key is not None and not hmac.compare_digest(request.headers.get(API_KEY_HEADER, "").encode("utf-8"), key):
            raise ApiError(401, f"missing or wrong API key (header {API_KEY_HEADER})")

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz():
        return {"status": "ok", "pending": batcher.pending, "queued": batcher.queued, "batches": batcher.batches,
                "images": batcher.images}

    @app.get("/v1/model")
    async def model_info(request: Request):
        check_key(request)
        return model

    def check_cost(image) -> tuple[int, int]:
        """(pixels, patches) of an image, 413 over the server's limits (after the run's resize)."""
        try:
            preprocess.check_cost(image.shape, detector.settings.stride, limits=(options.max_pixels,
                                                                                 options.max_patches))
        except SsimaeError as err:
            raise ApiError(413, err.problem) from None
        return preprocess.cost(image.shape, detector.settings.stride)

    @app.post("/v1/predict")
    async def predict(request: Request):
        check_key(request)
        kind, inline = wanted_picture(request.query_params)
        try:
            body = await read_body(request, options.max_bytes, options.request_timeout_s, batcher.stopping)
            data, name = upload_bytes(body, request.headers.get("content-type"))
            del body
            with batcher.admit():  # only once the body is here: a slow client holds no place
                image = await run_in_threadpool(decode_upload, data, preprocess, options.max_pixels)
                prediction = await batcher.submit(image, check_cost(image))
                png = None if kind is None else await run_in_threadpool(picture, kind, image, prediction)
                if png is not None and not inline:
                    return Response(png, media_type="image/png")
        except Busy as err:
            raise ApiError(503, str(err), {"Retry-After": str(RETRY_AFTER_S)}) from None
        except ShuttingDown as err:
            raise ApiError(503, str(err), {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"}) from None
        except RequestError as err:
            raise ApiError(err.status, err.message) from None
        row = {**prediction.to_dict(name), "model": model["model"], "residual": model["residual"]}
        if png is not None:
            row[f"{kind}_png_base64"] = base64.b64encode(png).decode("ascii")
        return JSONResponse(row)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                           "Cache-Control": "no-store"})

    return app
