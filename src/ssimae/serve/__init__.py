"""``ssimae serve``: a trained run or an ONNX export over HTTP, with batched inference.

    ssimae serve runs/carpet-ssim                   # torch engine, http://127.0.0.1:8000/
    ssimae export runs/carpet-ssim --out deploy/carpet
    python -m ssimae.serve deploy/carpet            # onnx engine, no torch needed

Built on FastAPI and uvicorn (``pip install 'ssimae[serve]'``). Modules:

* :mod:`ssimae.serve.app`: the endpoints (``POST /v1/predict``, ``GET /v1/model``,
  ``GET /healthz``, the page at ``/``), status codes and error bodies;
* :mod:`ssimae.serve.batcher`: one worker thread owns the detector and scores the images of
  requests that arrive together in one ``predict_many`` call; bounded admission (503);
* :mod:`ssimae.serve.decode`: request body -> image, with the size limits (413) and the
  decoder of ``ssimae predict`` applied to bytes;
* :mod:`ssimae.serve.options`: the limits and their defaults; :mod:`ssimae.serve.page`:
  the page; :mod:`ssimae.serve.server`: uvicorn set up for the app (JSON for the errors it
  answers itself, the request-header timeout, the graceful SIGTERM);
  :mod:`ssimae.serve.command`: the command line.

Importing this package imports neither torch nor FastAPI; the names below load on first use.
"""
from __future__ import annotations

__all__ = ["Batcher", "Busy", "RequestError", "ServeOptions", "create_app", "decode_upload", "load_detector",
           "main", "serve"]
_HOMES = {"Batcher": "batcher", "Busy": "batcher", "RequestError": "decode", "decode_upload": "decode",
          "ServeOptions": "options", "create_app": "app", "load_detector": "command", "main": "command",
          "serve": "command"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"ssimae.serve.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'ssimae.serve' has no attribute {name!r}")
