"""The limits and options of ``ssimae serve`` (:class:`ServeOptions`) and their defaults;
imports nothing heavy, so the command line can state them without the web framework."""
from __future__ import annotations

import dataclasses
import math

from ssimae.core.window import MAX_PATCHES as LIBRARY_MAX_PATCHES
from ssimae.core.window import MAX_PIXELS as LIBRARY_MAX_PIXELS

MAX_BYTES = 32 * 1024 * 1024  # the largest request body (32 MiB)
# What one image may cost: its pixels (checked from its header, and after the run's resize)
# and its 128 x 128 patches through the network at the run's stride (a 2000 x 2000 image at
# the paper's stride 30 is 4,096). A batch holds at most as much as one such image.
MAX_PIXELS = 2000 * 2000
MAX_PATCHES = 4096
MAX_BATCH_IMAGES = 8  # images per call of predict_many (ssimae predict's IMAGES_PER_BATCH)
MAX_WAIT_MS = 5.0  # the longest the worker waits for more images after the first
QUEUE_SIZE = 32  # requests held beyond one batch in the network; one more gets 503
REQUEST_TIMEOUT_S = 30.0  # a request's headers, and then its body, must arrive within this
SHUTDOWN_GRACE_S = 10.0  # on SIGTERM: time for the requests in progress to finish, then 503
MAX_WAIT_MS_CEILING = 1000.0  # the ceilings of --max-wait-ms, and of --request-timeout and --shutdown-grace
MAX_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """The server's limits and options (defaults: the module's constants).

    max_bytes: request body limit (bytes; a multipart envelope counts); max_pixels: image
    limit (H x W, as sent and after the run's resize); max_patches: the patches one image
    may send through the network, and a batch together; max_batch_images, max_wait_ms,
    queue_size: batching (see :mod:`ssimae.serve.batcher`; at most queue_size +
    max_batch_images requests are admitted at once, each only once its body is read);
    request_timeout_s: the time a client has to send a request's headers, and then its body
    (408 JSON and the connection closed otherwise); shutdown_grace_s: on SIGTERM, the time
    the requests in progress get to finish before they are answered 503; api_key: required
    in the ``X-API-Key`` header of /v1/ requests (None: open; never empty); threshold: the
    verdicts' threshold (None: the run's stored one). Each field's ``metadata["flag"]`` is its
    ``ssimae serve`` option, and an error (ValueError) names that flag.
    """

    max_bytes: int = dataclasses.field(default=MAX_BYTES, metadata={"flag": "--max-bytes"})
    max_pixels: int = dataclasses.field(default=MAX_PIXELS, metadata={"flag": "--max-pixels"})
    max_patches: int = dataclasses.field(default=MAX_PATCHES, metadata={"flag": "--max-patches"})
    max_batch_images: int = dataclasses.field(default=MAX_BATCH_IMAGES, metadata={"flag": "--max-batch-images"})
    max_wait_ms: float = dataclasses.field(default=MAX_WAIT_MS, metadata={"flag": "--max-wait-ms"})
    queue_size: int = dataclasses.field(default=QUEUE_SIZE, metadata={"flag": "--queue-size"})
    request_timeout_s: float = dataclasses.field(default=REQUEST_TIMEOUT_S, metadata={"flag": "--request-timeout"})
    shutdown_grace_s: float = dataclasses.field(default=SHUTDOWN_GRACE_S, metadata={"flag": "--shutdown-grace"})
    api_key: str | None = dataclasses.field(default=None, metadata={"flag": "--api-key"})
    threshold: float | None = dataclasses.field(default=None, metadata={"flag": "--threshold"})

    def __post_init__(self) -> None:
        """ValueError naming the ``ssimae serve`` flag of the first value out of its range."""
        for name, ceiling in (("max_bytes", None), ("max_pixels", LIBRARY_MAX_PIXELS),
                              ("max_patches", LIBRARY_MAX_PATCHES), ("max_batch_images", None), ("queue_size", None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 \
                    or (ceiling is not None and value > ceiling):
                bounds = "a whole number >= 1" if ceiling is None else f"a whole number between 1 and {ceiling}"
                raise ValueError(f"{flag_of(name)} must be {bounds}, got {value!r}")
        for name, low, high, unit in (("max_wait_ms", 0.0, MAX_WAIT_MS_CEILING, "ms"),
                                      ("request_timeout_s", 0.0, MAX_SECONDS, "s"),
                                      ("shutdown_grace_s", 0.0, MAX_SECONDS, "s")):
            value = getattr(self, name)
            closed = name == "max_wait_ms"  # 0 ms: no wait; 0 s would answer every request at once
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not (low <= value if closed else low < value) or value > high:
                bounds = f"between {low:g} and {high:g} {unit}" if closed else f"more than 0 and at most {high:g} {unit}"
                raise ValueError(f"{flag_of(name)} must be {bounds}, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"{flag_of('api_key')} is empty: give a key, or leave it unset to serve without one")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float))
                                           or not math.isfinite(self.threshold)):
            raise ValueError(f"{flag_of('threshold')} must be a finite number, got {self.threshold!r}")

    def limits(self) -> dict:
        """The limits as reported by ``GET /v1/model``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("api_key", "threshold")}


def flag_of(name: str) -> str:
    """The ``ssimae serve`` flag of the :class:`ServeOptions` field ``name`` ("max_pixels" -> "--max-pixels")."""
    return next(f.metadata["flag"] for f in dataclasses.fields(ServeOptions) if f.name == name)
