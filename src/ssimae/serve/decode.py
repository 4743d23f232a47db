"""From a request body to an image array in the run's layout, with the server's limits.

An upload is either the image file's bytes as the whole body (any ``Content-Type``), or a
``multipart/form-data`` body whose field ``file`` (or its only file part) holds them. The
bytes are decoded by :func:`ssimae.io.images.decode_image`, the decoder of ``ssimae predict``
applied to bytes: the same formats, bit depths and colour rules, so the server scores
exactly what ``predict`` scores for the same file. A body starting with the ``.npy`` magic
is a float array instead ((H, W) or (H, W, 3), values in [0, 1], as the Python API takes),
checked against the run's channels (:meth:`ssimae.core.preprocess.Preprocess.check`).

Problems raise :class:`RequestError` with the HTTP status and one line that names no file
on the server: 400 (broken image, bad body, wrong channels for the run), 413 (more bytes
or pixels than allowed, a decompression bomb included, refused from the header before any
pixel is decoded), 415 (not an image). Imports no torch and no web framework.
"""
from __future__ import annotations

import io
import math

import numpy as np

from ssimae.errors import SsimaeError
from ssimae.io.images import ImageTooLargeError, NotAnImageError, decode_image

NPY_MAGIC = b"\x93NUMPY"
FILE_FIELD = "file"  # the multipart form field of the image
MAX_BOUNDARY = 256  # characters of a multipart boundary (python-multipart's own ceiling; RFC 2046: 70)
MAX_NAME = 200  # characters of the client's file name kept (echoed as the row's "path")


class RequestError(Exception):
    """A request the server refuses: ``status`` (HTTP) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


def upload_bytes(body: bytes, content_type: str | None) -> tuple[bytes, str]:
    """(the image's bytes, the client's file name or "") of a request body: the body itself,
    or for ``multipart/form-data`` the field ``file`` (else the one part with a file name).
    The name is the client's, without folders; it is never opened."""
    if content_type and content_type.split(";")[0].strip().lower() == "multipart/form-data":
        return _multipart_file(body, content_type)
    return body, ""


def _multipart_file(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The image part of a multipart/form-data body, parsed in memory by python-multipart."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart/form-data body without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise RequestError(400, f"multipart/form-data boundary of {len(boundary)} characters, more than "
                                f"{MAX_BOUNDARY} (RFC 2046 allows 70)")
    parts: list[dict] = []
    header: list[list[bytes]] = [[], []]
    ended = []

    def on_header_end():
        parts[-1]["headers"][b"".join(header[0]).lower()] = b"".join(header[1])
        header[0].clear()
        header[1].clear()

    callbacks = {
        "on_part_begin": lambda: parts.append({"headers": {}, "data": []}),
        "on_header_field": lambda data, start, end: header[0].append(data[start:end]),
        "on_header_value": lambda data, start, end: header[1].append(data[start:end]),
        "on_header_end": on_header_end,
        "on_part_data": lambda data, start, end: parts[-1]["data"].append(data[start:end]),
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as err:  # MultipartParseError and the parser's other refusals
        raise RequestError(400, f"malformed multipart/form-data body ({err})") from None
    if not ended:
        raise RequestError(400, "incomplete multipart/form-data body (no closing boundary)")
    found = []
    for part in parts:
        options = parse_options_header(part["headers"].get(b"content-disposition", b""))[1]
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == FILE_FIELD or filename is not None:
            found.append((name == FILE_FIELD, b"".join(part["data"]), filename or b""))
    named = [f for f in found if f[0]]
    chosen = named if named else found
    if len(chosen) != 1:
        raise RequestError(400, f"send one image, as the form field {FILE_FIELD!r} "
                                f"({'none' if not chosen else len(chosen)} found)")
    data, filename = chosen[0][1], chosen[0][2].decode("utf-8", "replace")
    return data, filename.replace("\\", "/").rsplit("/", 1)[-1][:MAX_NAME]


def decode_upload(data: bytes, preprocess, max_pixels: int | None) -> np.ndarray:
    """An uploaded image file's bytes (or a ``.npy`` float array) -> float32 (H, W) gray or
    (H, W, 3) RGB in [0, 1], as the run (``preprocess``, a :class:`Preprocess`) reads it;
    RequestError (400, 413 or 415) otherwise."""
    if not data:
        raise RequestError(400, "empty body: send an image file (raw body or form field 'file')")
    if data.startswith(NPY_MAGIC):
        image = _decode_npy(data, max_pixels)
    else:
        try:
            image = decode_image(data, preprocess.color, max_pixels)
        except ImageTooLargeError as err:
            raise RequestError(413, err.problem) from None
        except NotAnImageError as err:
            raise RequestError(415, f"{err.problem} (PNG, JPEG, TIFF, BMP and other Pillow formats are read)") from None
        except SsimaeError as err:
            raise RequestError(400, err.problem) from None
    try:
        return preprocess.check(image)
    except ValueError as err:
        raise RequestError(400, str(err)) from None


def _decode_npy(data: bytes, max_pixels: int | None) -> np.ndarray:
    """A ``.npy`` float array of shape (H, W) or (H, W, C) with values in [0, 1]; its
    header is checked (type, shape, pixels) before the data is read."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise RequestError(400, f".npy format version {version} is not supported (1.0 and 2.0 are)")
        shape, _, dtype = read_header(buf)
    except ValueError as err:
        raise RequestError(400, f"broken .npy header ({err})") from None
    if dtype.kind != "f" or dtype.hasobject:
        raise RequestError(400, f"a .npy image must hold floats in [0, 1], not {dtype}")
    if len(shape) not in (2, 3) or 0 in shape:
        raise RequestError(400, f"a .npy image must have shape (H, W) or (H, W, C), not {tuple(shape)}")
    pixels = math.prod(shape[:2])
    if max_pixels is not None and pixels > max_pixels:
        raise RequestError(413, f"image too large ({pixels} pixels, more than the limit of {max_pixels})")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise RequestError(400, f"broken .npy data ({err})") from None
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise RequestError(400, "a .npy image must hold finite values in [0, 1]")
    return arr.astype(np.float32)
