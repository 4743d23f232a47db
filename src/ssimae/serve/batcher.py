"""Batching concurrent requests: one worker thread owns the detector and scores the images
that arrive together in one call of its ``predict_many`` (whose patches go through the
network together).

Admission is bounded: :meth:`Batcher.admit` lets in at most ``capacity`` requests at once
(decoding, queued or in the network; the server admits a request once its body is read);
one more raises :class:`Busy` at once (the server answers 503 with Retry-After), so there
is never an unbounded backlog. Requests wait in a queue for the worker; the worker takes
the first, then gathers up to ``max_batch_images`` with at most ``max_wait_s`` of waiting,
and only waits while other admitted requests are still on their way (a lone request is
scored at once). Each item has a cost (pixels, patches); a batch never costs more than
``budget`` together (an item alone always goes), so a batch's memory and time are those of
one largest image. The event loop never runs inference: it awaits a future the worker settles.

Shutdown (:meth:`Batcher.begin_shutdown`): no new request is admitted; what is queued or in
the network gets ``grace_s`` to finish; then every request still waiting is refused with
:class:`ShuttingDown` and the worker scores nothing more (a batch already in the network
runs out on its daemon thread, whose result nobody waits for).
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
NO_BUDGET = (float("inf"), float("inf"))


class Busy(Exception):
    """The server holds as many requests as it may (``pending`` of ``capacity``)."""

    def __init__(self, pending: int, capacity: int):
        super().__init__(f"server busy ({pending} requests in progress, the limit); retry later")
        self.pending, self.capacity = pending, capacity


class ShuttingDown(Exception):
    """The server is stopping: the request was not (or no longer) going to be scored."""

    def __init__(self):
        super().__init__("server shutting down; the request was not scored, retry later")


def _settle(fut: asyncio.Future, result: Any, error: BaseException | None) -> None:
    """Set a future's outcome on its event loop, unless its request is gone."""
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _fits(total: tuple, cost: tuple, budget: tuple) -> bool:
    """Whether ``cost`` added to ``total`` stays within ``budget``, component by component."""
    return all(t + c <= b for t, c, b in zip(total, cost, budget))


class Batcher:
    """Scores items (images) with ``predict(items) -> results`` (one result per item, in
    order) on one worker thread, batching those that arrive together.

    max_batch_images: the most items per call (>= 1); max_wait_s: the longest the worker
    waits for more after the first (seconds, >= 0); capacity: the most admitted requests
    at once (>= 1); budget: the most a batch may cost, summed over its items' costs (a tuple,
    e.g. (pixels, patches)). ``start``/``stop`` run and end the worker; counters ``batches``
    and ``images`` say what it has done.
    """

    def __init__(self, predict: Callable[[list], Sequence], max_batch_images: int = 8, max_wait_s: float = 0.005,
                 capacity: int = 40, budget: tuple = NO_BUDGET):
        if max_batch_images < 1 or capacity < 1 or max_wait_s < 0:
            raise ValueError("max_batch_images and capacity must be >= 1 and max_wait_s >= 0")
        self._predict = predict
        self.max_batch_images, self.max_wait_s, self.capacity, self.budget = (max_batch_images, max_wait_s, capacity,
                                                                              tuple(budget))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._held = None  # an item taken from the queue that did not fit its batch: the next one's first
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: set[asyncio.Future] = set()  # futures of submitted items not yet settled
        self.pending = 0  # admitted and not yet answered; changed on the event loop only
        self.batches = self.images = 0
        self.closing = False  # no new admissions (shutdown has begun)
        self.refusing = False  # the grace is over: nothing more is scored
        self.stopping: asyncio.Event | None = None  # set when refusing begins (created by start)

    @property
    def queued(self) -> int:
        """Items waiting for the worker (not yet in a batch)."""
        return self._queue.qsize() + (self._held is not None)

    def start(self) -> None:
        """Start the worker; call it on the event loop that will submit items."""
        self._loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="ssimae-serve-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let the worker finish what is queued (nothing, once refusing), then end it;
        waits at most ``timeout`` seconds (the worker is a daemon thread)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def begin_shutdown(self, grace_s: float) -> None:
        """Admit no more requests, and refuse those still waiting ``grace_s`` seconds from now.
        Safe to call from any thread (e.g. a signal handler)."""
        if self._loop is None or self._loop.is_closed():
            return

        def begin():
            self.closing = True
            self._loop.call_later(grace_s, self.refuse_waiting)

        self._loop.call_soon_threadsafe(begin)

    def refuse_waiting(self) -> None:
        """Answer every request still waiting with :class:`ShuttingDown` and score nothing
        more. Call it on the event loop thread."""
        self.closing = self.refusing = True
        if self.stopping is not None:
            self.stopping.set()
        for fut in list(self._waiting):
            _settle(fut, None, ShuttingDown())

    @contextmanager
    def admit(self):
        """``with batcher.admit():`` around all of one request's work; Busy when full,
        ShuttingDown once shutdown has begun. Call it on the event loop thread."""
        if self.closing:
            raise ShuttingDown()
        if self.pending >= self.capacity:
            raise Busy(self.pending, self.capacity)
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def submit(self, item, cost: tuple = ()) -> Any:
        """The result of ``predict`` for ``item`` (costing ``cost``, within ``budget``),
        computed on the worker thread; ShuttingDown once refusing."""
        if self.refusing:
            raise ShuttingDown()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiting.add(fut)
        fut.add_done_callback(self._waiting.discard)
        cost = tuple(cost) + (0,) * (len(self.budget) - len(cost))
        self._queue.put((item, fut, loop, cost))
        return await fut

    def _next(self, block: bool, timeout: float | None = None):
        """The held item, else the queue's next (queue.Empty when there is none in time)."""
        if self._held is not None:
            item, self._held = self._held, None
            return item
        return self._queue.get(block, timeout)

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and the items that join it within the batch's size and budget:
        (batch, whether a stop was queued)."""
        batch, deadline, total = [first], time.monotonic() + self.max_wait_s, first[3]
        while len(batch) < self.max_batch_images:
            try:
                item = self._next(False)
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self.pending <= len(batch):  # nothing else on its way
                    break
                try:
                    item = self._next(True, min(left, _POLL_S))
                except queue.Empty:
                    continue
            if item is _STOP:
                return batch, True
            if not _fits(total, item[3], self.budget):
                self._held = item  # the first of the next batch
                break
            total = tuple(t + c for t, c in zip(total, item[3]))
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        while True:
            first = self._next(True)
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._score(batch)
            if stop:
                return

    def _score(self, batch: list) -> None:
        # requests answered already (refused at shutdown, or gone) are not scored
        batch = [entry for entry in batch if not entry[1].done()]
        if self.refusing or not batch:
            return
        try:
            results = list(self._predict([item for item, _, _, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for {len(batch)} items")
            outcomes = [(r, None) for r in results]
        except Exception as err:  # answered as a 500 for each request; the worker goes on
            log.exception("scoring a batch of %d images failed", len(batch))
            outcomes = [(None, err)] * len(batch)
        self.batches += 1
        self.images += len(batch)
        for (_, fut, loop, _), (result, error) in zip(batch, outcomes):
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # its event loop has closed (server shut down)
                pass
