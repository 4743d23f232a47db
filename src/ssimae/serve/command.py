"""``ssimae serve RUN_OR_EXPORT`` (and ``python -m ssimae.serve EXPORT`` where torch is not
installed): load a detector, then serve it with uvicorn (:func:`serve`).

This module imports neither torch nor the web framework at import time (``ssimae --help``
works without the ``serve`` extra); an export served with the onnx engine never imports
torch at all.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import ipaddress
import os
import socket
import sys
from pathlib import Path

from ssimae.errors import SsimaeError

API_KEY_ENV = "SSIMAE_API_KEY"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
ENGINES = ("auto", "torch", "onnx")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _whole_number(text: str) -> int:
    """A whole number; its range is :class:`ssimae.serve.options.ServeOptions`'s to check."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    """A number; its range is :class:`ssimae.serve.options.ServeOptions`'s to check."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ssimae serve`` (defaults from :mod:`ssimae.serve.options`'s constants)."""
    from ssimae.serve.options import LIBRARY_MAX_PATCHES, LIBRARY_MAX_PIXELS, ServeOptions

    d = dataclasses.asdict(ServeOptions())
    p.add_argument("source", metavar="RUN_OR_EXPORT",
                   help="run folder or checkpoint (torch engine), or a folder written by `ssimae export` (onnx)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="torch, onnx (no torch needed), or auto (default): onnx for an export, torch for a run")
    p.add_argument("--threshold", type=_number, default=None, help="pixel threshold, which draws the masks (default: the stored one); the stored image "
                        "threshold decides the verdict (for a run without one, this does)")
    p.add_argument("--max-bytes", type=_whole_number, default=d["max_bytes"],
                   help=f"largest request body in bytes; larger gets 413 (default {d['max_bytes']}, 32 MiB)")
    p.add_argument("--max-pixels", type=_whole_number, default=d["max_pixels"],
                   help=f"largest image in pixels (H x W), checked from its header and after the run's resize; "
                        f"larger gets 413 (default {d['max_pixels']}, 2000 x 2000; at most {LIBRARY_MAX_PIXELS})")
    p.add_argument("--max-patches", type=_whole_number, default=d["max_patches"],
                   help=f"most 128x128 patches one image may send through the network at the run's stride, and a "
                        f"batch together; more gets 413 (default {d['max_patches']}: a 2000 x 2000 image at stride "
                        f"30; at most {LIBRARY_MAX_PATCHES})")
    p.add_argument("--max-batch-images", type=_whole_number, default=d["max_batch_images"],
                   help=f"most images scored together in one batch (default {d['max_batch_images']})")
    p.add_argument("--max-wait-ms", type=_number, default=d["max_wait_ms"],
                   help=f"longest wait for more images to join a batch (default {d['max_wait_ms']:g} ms)")
    p.add_argument("--queue-size", type=_whole_number, default=d["queue_size"],
                   help=f"requests held beyond the batch in the network; more get 503 with Retry-After "
                        f"(default {d['queue_size']})")
    p.add_argument("--request-timeout", type=_number, default=d["request_timeout_s"], metavar="SECONDS",
                   help=f"time a client has to send a request's headers, and then its body; later gets 408 and the "
                        f"connection closed (default {d['request_timeout_s']:g})")
    p.add_argument("--shutdown-grace", type=_number, default=d["shutdown_grace_s"], metavar="SECONDS",
                   help=f"on SIGTERM, time the requests in progress get to finish before they are answered 503 "
                        f"(default {d['shutdown_grace_s']:g}); the process exits about a second later")
    p.add_argument("--api-key", default=None,
                   help=f"require this key in the X-API-Key header of /v1/ requests (default: the environment "
                        f"variable {API_KEY_ENV}, else none; prefer the variable: options show in ps)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of the network (default: the engine's own, all cores)")
    p.add_argument("--device", default="auto", help="torch engine: cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="log warnings only (no access log)")


def load_detector(source: str | os.PathLike, engine: str = "auto", device: str | None = None,
                  threads: int | None = None):
    """(detector, engine name): an OnnxDetector for engine "onnx" (imports no torch) or a
    torch Detector for "torch"; "auto" picks by :func:`ssimae.inference.engines.is_export`."""
    from ssimae.inference.engines import pick_engine
    from ssimae.inference.fusion import FusedDetector, is_fusion

    engine = pick_engine(source, engine)
    if is_fusion(source):
        return FusedDetector.load(source, engine, device, threads), engine
    if engine == "onnx":
        from ssimae.inference.onnx_detector import OnnxDetector

        return OnnxDetector.load(source, threads), engine
    if not Path(source).exists():
        raise SsimaeError("no such run folder or checkpoint", source)
    try:
        import torch
    except ImportError:
        raise SsimaeError("the torch engine needs PyTorch; serve an export (ssimae export) with --engine onnx, "
                          "e.g. python -m ssimae.serve EXPORT_DIR", source) from None
    from ssimae.inference.detector import Detector

    if threads is not None:
        torch.set_num_threads(threads)
    return Detector.load(source, device), engine


def require_serve_extra() -> None:
    """SsimaeError naming the extra to install when FastAPI or uvicorn is missing."""
    for module in ("fastapi", "uvicorn", "python_multipart"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SsimaeError(f"ssimae serve needs the {module} package: pip install 'ssimae[serve]'")


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), for uvicorn to listen on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SsimaeError(f"--host {host}: unknown address ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise SsimaeError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def api_key_of(option: str | None) -> str | None:
    """The API key: ``--api-key``, else the environment variable :data:`API_KEY_ENV`, else
    None (no key). An empty or blank key is refused: it would turn authentication off."""
    key, where = (option, "--api-key") if option is not None else (os.environ.get(API_KEY_ENV), API_KEY_ENV)
    if key is not None and not key.strip():
        raise SsimaeError(f"{where} is empty: give a key, or leave it unset to serve without one")
    return key


def serve_options(args: argparse.Namespace, api_key: str | None):
    """The :class:`ssimae.serve.options.ServeOptions` of the parsed options (each field read
    from the option its metadata names); SsimaeError naming the flag of a value out of range."""
    from ssimae.serve.options import ServeOptions

    values = {f.name: getattr(args, f.metadata["flag"].lstrip("-").replace("-", "_"))
              for f in dataclasses.fields(ServeOptions)}
    try:
        return ServeOptions(**dict(values, api_key=api_key))
    except ValueError as err:
        raise SsimaeError(str(err)) from None


def serve(args: argparse.Namespace, log=print) -> None:
    """Load ``args.source`` and serve it until interrupted (the options of :func:`add_arguments`)."""
    require_serve_extra()
    if not 0 <= args.port <= 65535:
        raise SsimaeError(f"--port must be between 0 and 65535, got {args.port}")
    options = serve_options(args, api_key_of(args.api_key))
    api_key = options.api_key
    from ssimae.serve.app import create_app
    from ssimae.serve.server import make_server

    detector, engine = load_detector(args.source, args.engine, args.device, args.threads)
    app = create_app(detector, options)
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    model = app.state.model
    image_t = model["image_threshold"]
    log(f"ssimae serve: {model['title']} ({engine}) from {args.source}, "
        + (f"image threshold {image_t:.6g} (the verdict), " if image_t is not None else "")
        + f"pixel threshold {model['pixel_threshold']:.6g}, "
        f"on http://{host}:{port}/ (POST /v1/predict; API key {'required' if api_key else 'not required'})",
        flush=True)
    if not _is_loopback(args.host) and api_key is None:
        print(f"ssimae serve: warning: listening on {args.host} without an API key; anyone who can reach this "
              f"port can use the model (set {API_KEY_ENV})", file=sys.stderr, flush=True)
    make_server(app, options, args.quiet).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    """``python -m ssimae.serve``: ``ssimae serve`` without the ``ssimae`` command (which
    imports torch for its other subcommands). Bad input: one line and exit status 2."""
    p = argparse.ArgumentParser(prog="python -m ssimae.serve", description=(
        "Serve a run or an export over HTTP (POST /v1/predict, GET /v1/model, GET /healthz, a page at /); "
        "an export with the onnx engine needs no torch."))
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        serve(args)
    except SsimaeError as e:
        print(f"ssimae: error: {e}", file=sys.stderr)
        return 2
    return 0
