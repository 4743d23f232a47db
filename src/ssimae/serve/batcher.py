"""Batching concurrent requests: one worker thread owns the detector and scores the images
that arrive together in one call of its ``predict_many`` (whose patches go through the
network together).

Admission is bounded: :meth:`Batcher.admit` lets in at most ``capacity`` requests at once
(reading, decoding, queued or in the network); one more raises :class:`Busy` at once (the
server answers 503 with Retry-After), so there is never an unbounded backlog. Requests wait
in a queue for the worker; the worker takes the first, then gathers up to
``max_batch_images`` with at most ``max_wait_s`` of waiting, and only waits while other
admitted requests are still on their way (a lone request is scored at once). The event
loop never runs inference: it awaits a future the worker settles.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Sequence

log = logging.getLogger("ssimae.serve")
_STOP = object()
_POLL_S = 0.001  # how often a gathering worker looks again whether more requests are on their way


class Busy(Exception):
    """The server holds as many requests as it may (``pending`` of ``capacity``)."""

    def __init__(self, pending: int, capacity: int):
        super().__init__(f"server busy ({pending} requests in progress, the limit); retry later")
        self.pending, self.capacity = pending, capacity


def _settle(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """Set a future's outcome on its event loop, unless its request is gone."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class Batcher:
    """Scores items (images) with ``predict(items) -> results`` (one result per item, in
    order) on one worker thread, batching those that arrive together.

    max_batch_images: the most items per call (>= 1); max_wait_s: the longest the worker
    waits for more after the first (seconds, >= 0); capacity: the most admitted requests
    at once (>= 1). ``start``/``stop`` run and end the worker; counters ``batches`` and
    ``images`` say what it has done.
    """

    def __init__(self, predict: Callable[[list], Sequence], max_batch_images: int = 8, max_wait_s: float = 0.005,
                 capacity: int = 40):
        if max_batch_images < 1 or capacity < 1 or max_wait_s < 0:
            raise ValueError("max_batch_images and capacity must be >= 1 and max_wait_s >= 0")
        self._predict = predict
        self.max_batch_images, self.max_wait_s, self.capacity = max_batch_images, max_wait_s, capacity
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.pending = 0  # admitted and not yet answered; changed on the event loop only
        self.batches = self.images = 0

    @property
    def queued(self) -> int:
        """Items waiting for the worker (not yet in a batch)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ssimae-serve-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let the worker finish what is queued, then end it."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @contextmanager
    def admit(self):
        """``with batcher.admit():`` around all of one request's work; Busy when full.
        Call it on the event loop thread."""
        if self.pending >= self.capacity:
            raise Busy(self.pending, self.capacity)
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def submit(self, item) -> Any:
        """The result of ``predict`` for ``item``, computed on the worker thread."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((item, fut, loop))
        return await fut

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and the items that join it: (batch, whether a stop was queued)."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_images:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self.pending <= len(batch):  # nothing else on its way
                    break
                try:
                    item = self._queue.get(timeout=min(left, _POLL_S))
                except queue.Empty:
                    continue
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._score(batch)
            if stop:
                return

    def _score(self, batch: list) -> None:
        try:
            results = list(self._predict([item for item, _, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for {len(batch)} items")
            outcomes = [(r, None) for r in results]
        except Exception as err:  # answered as a 500 for each request; the worker goes on
            log.exception("scoring a batch of %d images failed", len(batch))
            outcomes = [(None, err)] * len(batch)
        self.batches += 1
        self.images += len(batch)
        for (_, fut, loop), (result, error) in zip(batch, outcomes):
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # its event loop has closed (server shut down)
                pass
