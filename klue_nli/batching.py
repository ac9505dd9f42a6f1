"""Adaptive batching inside the serving process.

Concurrent requests are queued; one model call at a time takes everything queued so far (up
to `max_batch_size` pairs) and runs it in a worker thread, so the event loop keeps accepting
requests meanwhile. Under light load a request runs alone at once; under heavy load batches
grow by themselves. A request that waited longer than `max_latency_ms` before its batch started
is refused (`Overloaded`), so an overloaded server sheds load instead of queueing without bound.

Why not BentoML's dispatcher: it batches only across HTTP calls to a batchable endpoint, which
for a single-pair `/api` means a second service and an extra HTTP hop per request; on a small
model that hop costs more than the forward pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(RuntimeError):
    """A request waited longer than max_latency_ms for the model."""


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch_size: int,
        max_latency_ms: float,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000
        self._queue: asyncio.Queue[tuple[list[T], asyncio.Future, float]] | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Results for `items`, in order. The items of one call stay in one model call,
        unless they alone exceed max_batch_size."""
        if not items:
            return []
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((list(items), future, time.monotonic()))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        held: tuple[list[T], asyncio.Future, float] | None = None
        while True:
            first = held or await self._queue.get()
            held = None
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
            live = []
            for items, future, queued_at in batch:
                if future.cancelled():  # the client went away
                    continue
                if now - queued_at > self.max_latency_s:
                    future.set_exception(Overloaded("the model queue is full; try again"))
                else:
                    live.append((items, future))
            if live:
                await self._call(live)

    async def _call(self, live: list[tuple[list[T], asyncio.Future]]) -> None:
        flat = [item for items, _ in live for item in items]
        try:
            results = list(await asyncio.to_thread(self._fn, flat))
        except Exception as exc:  # every waiting request gets the error, the loop goes on
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for items, future in live:
            if not future.done():
                future.set_result(results[start : start + len(items)])
            start += len(items)
