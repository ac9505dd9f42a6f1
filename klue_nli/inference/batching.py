"""Adaptive batching inside the serving process.

Concurrent requests are queued; one model call at a time takes everything queued so far (up
to `max_batch_size` pairs) and runs it in a worker thread, so the event loop keeps accepting
requests meanwhile. Under light load a request runs alone at once; under heavy load batches
grow by themselves. An overloaded server sheds load instead of queueing without bound, twice:
- at admission: a request whose expected wait (the batches ahead of it, in flight included,
  times the recent batch duration) exceeds `max_latency_ms` is refused at once (`Overloaded`),
  so a client learns in microseconds, not after waiting out the limit;
- at batch start: a request whose wait so far plus the expected model call (the recent batch
  duration) would pass `max_latency_ms` is refused rather than answered late.
The wait counts from `arrived` where the caller knows it (the service: when the HTTP request
came in, service/arrival.py), else from the request's entry into the queue.
An answered request thus spends at most about `max_latency_ms` in the batcher (a batch that
runs slower than the recent ones adds its difference).
A model call that returns the wrong number of results fails only its own batch's requests
(`BatchError`: a 500 and a log line), and a worker task that dies fails every request waiting
on it (`WorkerStopped`) and is started anew by the next request, so nothing hangs.

Why not BentoML's dispatcher: it batches only across HTTP calls to a batchable endpoint, which
for a single-pair `/api` means a second service and an extra HTTP hop per request; on a small
model that hop costs more than the forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """A request waited longer than max_latency_ms for the model."""


class BatchError(RuntimeError):
    """The model call of a request's batch returned a wrong result (not one per item)."""


class WorkerStopped(RuntimeError):
    """The batching worker stopped while the request waited; the next request restarts it."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch_size: int,
        max_latency_ms: float,
        observe: Callable[[int, list[float], float], None] | None = None,
        fill_ms: float = 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fn = fn
        # Called after each answered batch with (items, each request's queue wait in s,
        # the model call's s): the service's metrics.
        self._observe = observe
        self.fill_s = fill_ms / 1000
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000
        # (items, future, entered the queue, arrived: where the latency budget starts)
        self._queue: asyncio.Queue[tuple[list[T], asyncio.Future, float, float]] | None = None
        self._worker: asyncio.Task | None = None
        self._queued = 0  # items submitted whose batch has not started
        self._in_flight = False
        self._last_size = 0  # items of the last answered batch
        self._pending: set[asyncio.Future] = set()  # every request not answered yet
        self.batch_s: float | None = None  # recent model-call duration (moving average)

    def expected_wait_s(self, n: int) -> float:
        """How long `n` more items would wait for their batch to start, from recent batches."""
        if self.batch_s is None:
            return 0.0  # nothing measured yet: admit
        ahead = -(-self._queued // self.max_batch_size)  # batches already queued
        partial = self._queued % self.max_batch_size
        if partial and partial + n <= self.max_batch_size:
            ahead -= 1  # they join the last queued batch
        return (ahead + self._in_flight) * self.batch_s

    async def submit(self, items: Sequence[T], arrived: float | None = None) -> list[R]:
        """Results for `items`, in order. The items of one call stay in one model call,
        unless they alone exceed max_batch_size. `arrived`: when the request came in
        (time.monotonic()), if before now."""
        if not items:
            return []
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        now = time.monotonic()
        arrived = now if arrived is None else min(arrived, now)
        if now - arrived + self.expected_wait_s(len(items)) > self.max_latency_s:
            raise Overloaded("the model queue is full; try again")
        future = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._queued += len(items)
        await self._queue.put((list(items), future, now, arrived))
        return await future

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            # However the worker ended, no request may wait on it forever, and the counts it
            # kept must not go on refusing new requests; the next submit starts a new one.
            if self._pending:
                log.error(
                    "batching worker stopped; failing %d waiting requests", len(self._pending)
                )
            for future in list(self._pending):
                if not future.done():
                    future.set_exception(WorkerStopped("the model worker stopped; try again"))
            self._queued, self._in_flight = 0, False

    async def _loop(self) -> None:
        assert self._queue is not None
        held: tuple[list[T], asyncio.Future, float, float] | None = None
        while True:
            first = held or await self._queue.get()
            held = None
            await self._fill()
            batch = [first]
            size = len(first[0])
            while not self._queue.empty() and size < self.max_batch_size:
                nxt = self._queue.get_nowait()
                if size + len(nxt[0]) > self.max_batch_size:
                    held = nxt  # starts the next batch; keeps arrival order
                    break
                batch.append(nxt)
                size += len(nxt[0])
            now = time.monotonic()
            live, waits = [], []
            self._queued -= size
            # its answer would come after the wait so far plus the model call
            expected_call = self.batch_s or 0.0
            for items, future, queued_at, arrived in batch:
                if future.cancelled():  # the client went away
                    continue
                if now - arrived + expected_call > self.max_latency_s:
                    future.set_exception(Overloaded("the model queue is full; try again"))
                else:
                    live.append((items, future))
                    waits.append(now - queued_at)
            if live:
                await self._call(live, waits)

    async def _fill(self) -> None:
        """Before a batch starts, give the clients the last batch answered up to `fill_ms`
        (and at most half a batch) to come back. Under closed-loop load their next requests
        arrive together, but the event loop parses them one by one while it sends the last
        answers; a batch started at once takes the first one or two, runs nearly empty at
        the model's worst efficiency, and the rest queue behind it (batches alternate between
        nearly empty and nearly full). Under light load the last batch was one request, and
        nothing waits."""
        target = min(self._last_size, self.max_batch_size)
        if self.fill_s <= 0 or self._queued >= target:
            return
        deadline = time.monotonic() + min(self.fill_s, 0.5 * (self.batch_s or 0.0))
        while self._queued < target and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    async def _call(self, live: list[tuple[list[T], asyncio.Future]], waits: list[float]) -> None:
        flat = [item for items, _ in live for item in items]
        self._in_flight = True
        start = time.monotonic()
        try:
            results = list(await asyncio.to_thread(self._fn, flat))
        except Exception as exc:  # every waiting request gets the error, the loop goes on
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._in_flight = False
        if len(results) != len(flat):  # never hand one request another's results
            log.error("model call returned %d results for %d items", len(results), len(flat))
            error = BatchError(f"the model returned {len(results)} results for {len(flat)} items")
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            return
        took = time.monotonic() - start
        # Under overload every batch is full, so the average converges to a full batch's time;
        # under light load a burst is under-estimated at first and the start check catches it.
        self.batch_s = took if self.batch_s is None else 0.8 * self.batch_s + 0.2 * took
        start = 0
        for items, future in live:
            if not future.done():
                future.set_result(results[start : start + len(items)])
            start += len(items)
        self._last_size = len(flat)
        if self._observe is not None:
            self._observe(len(flat), waits, took)
