"""ASGI middleware that stamps when each request reached the service, so the batcher's latency
budget (serve.max_latency_ms) counts the time before the model queue too: reading the body, the
JSON contract and validation. Under overload the event loop is busy and that time grows; a
budget started at the queue answered requests past the limit (docs/performance.md)."""

from __future__ import annotations

import time
from contextvars import ContextVar

# Each request runs in its own task with its own copy of the context: no request sees
# another's stamp.
ARRIVED: ContextVar[float | None] = ContextVar("klue_nli_arrived", default=None)


class Arrival:
    """ASGI middleware: ARRIVED = time.monotonic() when an HTTP request comes in."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            ARRIVED.set(time.monotonic())
        await self.app(scope, receive, send)
