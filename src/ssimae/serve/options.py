"""The limits and options of ``ssimae serve`` (:class:`ServeOptions`) and their defaults;
imports nothing heavy, so the command line can state them without the web framework."""
from __future__ import annotations

import dataclasses

MAX_BYTES = 32 * 1024 * 1024  # the largest request body (32 MiB)
MAX_PIXELS = 4096 * 4096  # the largest image (16.8 megapixels), checked from its header
MAX_BATCH_IMAGES = 8  # images per call of predict_many (ssimae predict's IMAGES_PER_BATCH)
MAX_WAIT_MS = 5.0  # the longest the worker waits for more images after the first
QUEUE_SIZE = 32  # requests held beyond one batch in the network; one more gets 503


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """The server's limits and options (defaults: the module's constants).

    max_bytes: request body limit (bytes; a multipart envelope counts); max_pixels: image
    limit (H x W); max_batch_images, max_wait_ms, queue_size: batching (see
    :mod:`ssimae.serve.batcher`; at most queue_size + max_batch_images requests are held at
    once); api_key: required in the ``X-API-Key`` header of /v1/ requests (None: open);
    threshold: the verdicts' threshold (None: the run's stored one).
    """

    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS
    max_batch_images: int = MAX_BATCH_IMAGES
    max_wait_ms: float = MAX_WAIT_MS
    queue_size: int = QUEUE_SIZE
    api_key: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty: give a key, or None to serve without one")

    def limits(self) -> dict:
        """The limits as reported by ``GET /v1/model``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("api_key", "threshold")}
