"""ASGI middleware: a per-client rate limit on one route (POST /feedback), answered 429 with
Retry-After in the project's error shape before the body is read."""

from __future__ import annotations

import math
import time

from service.errors import Receive, Send, send_error

MAX_CLIENTS = 10_000  # buckets kept; past it, the full (idle) ones are forgotten


class RateLimit:
    """A token bucket per client address: `per_minute` requests at once, then one every
    60 / `per_minute` seconds. The address is the connection's peer: behind a proxy every
    client shares the proxy's bucket."""

    def __init__(self, app, path: str, per_minute: int) -> None:
        self.app = app
        self.path = path
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, when)

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        host = (scope.get("client") or ("unknown", 0))[0]
        wait = self.take(host, time.monotonic())
        if wait > 0:
            return await send_error(
                send,
                429,
                f"too many corrections from this address: try again in {math.ceil(wait)} s",
                [{"loc": ["client"], "msg": f"at most {int(self.capacity)} a minute"}],
                headers=[(b"retry-after", str(math.ceil(wait)).encode())],
            )
        return await self.app(scope, receive, send)

    def take(self, host: str, now: float) -> float:
        """Take one token from `host`'s bucket: 0 if there was one, else the seconds until
        there will be."""
        tokens, then = self._buckets.get(host, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[host] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[host] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        full = [
            h
            for h, (t, when) in self._buckets.items()
            if t + (now - when) * self.rate >= self.capacity
        ]
        for host in full:
            del self._buckets[host]
