"""ASGI middleware: a per-client rate limit on one route (POST /feedback), answered 429 with
Retry-After in the project's error shape before the body is read.

The client is the connection's peer, or the address a trusted proxy names
(feedback.trusted_proxies; the service tells uvicorn, which rewrites the peer only for
those). An IPv6 client is keyed by its /64: one host usually holds a whole /64, and would
otherwise have 2^64 buckets to choose from.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

from service.errors import Receive, Send, send_error

MAX_CLIENTS = 10_000  # buckets kept; past it, the least recently seen is forgotten


def client_key(host: str) -> str:
    """The bucket of a client address: IPv4 as it is, IPv6 by its /64 (an IPv4-mapped IPv6
    address as the IPv4 one), anything else (a Unix socket's name) as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class RateLimit:
    """A token bucket per client address: `per_minute` requests at once, then one every
    60 / `per_minute` seconds. The address is the connection's peer: behind a proxy every
    client shares the proxy's bucket."""

    def __init__(self, app, path: str, per_minute: int) -> None:
        self.app = app
        self.path = path
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        # host -> (tokens, when), least recently seen first: each request costs the same time
        # however many clients there are
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        host = client_key((scope.get("client") or ("unknown", 0))[0])
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
        tokens, then = self._buckets.pop(host, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self._buckets[host] = (tokens - 1.0 if wait == 0 else tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait
