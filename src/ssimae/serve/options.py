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
    verdicts' threshold (None: the run's stored one).
    """

    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS
    max_patches: int = MAX_PATCHES
    max_batch_images: int = MAX_BATCH_IMAGES
    max_wait_ms: float = MAX_WAIT_MS
    queue_size: int = QUEUE_SIZE
    request_timeout_s: float = REQUEST_TIMEOUT_S
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    api_key: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty: give a key, or None to serve without one")
        if not 1 <= self.max_pixels <= LIBRARY_MAX_PIXELS or not 1 <= self.max_patches <= LIBRARY_MAX_PATCHES:
            raise ValueError(f"max_pixels must be in 1..{LIBRARY_MAX_PIXELS} and max_patches in "
                             f"1..{LIBRARY_MAX_PATCHES} (the ceilings of scoring one image)")
        for name in ("request_timeout_s", "shutdown_grace_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")

    def limits(self) -> dict:
        """The limits as reported by ``GET /v1/model``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("api_key", "threshold")}
