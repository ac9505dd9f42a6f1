"""ASGI middleware: a per-client rate limit on one route (POST /feedback), answered 429 with
Retry-After in the project's error shape before the body is read.

The count is kept in the feedback store (klue_nli.data.feedback: FeedbackStore.take), so it
is one limit for every worker and every service sharing the store, and survives a restart;
with the store out of reach the route is a 503, as the correction itself would be.

The client is the connection's peer, or the address a trusted proxy names
(feedback.trusted_proxies; the service tells uvicorn, which rewrites the peer only for
those). An IPv6 client is keyed by its /64: one host usually holds a whole /64, and would
otherwise have 2^64 buckets to choose from.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math

from klue_nli.core.errors import UserError
from service.errors import FEEDBACK_ERRORS, Receive, Send, send_error
from service.feedback import LazyStore


def client_key(host: str) -> str:
    """The bucket of a client address: IPv4 as it is, IPv6 by its /64 (an IPv4-mapped IPv6
    address as the IPv4 one), anything else (a Unix socket's name) as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class RateLimit:
    """`per_minute` requests from one client at once, then one every 60 / `per_minute`
    seconds, counted in the feedback store."""

    def __init__(self, app, path: str, per_minute: int, store: LazyStore) -> None:
        self.app = app
        self.path = path
        self.per_minute = per_minute
        self.store = store

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        host = client_key((scope.get("client") or ("unknown", 0))[0])
        try:  # SQLAlchemy blocks: the event loop keeps serving meanwhile
            wait = await asyncio.to_thread(self.take, host)
        except UserError:  # unreachable, refusing writes, or its driver missing
            self.store.forget()
            return await send_error(send, 503, FEEDBACK_ERRORS[503])
        if wait > 0:
            return await send_error(
                send,
                429,
                f"too many corrections from this address: try again in {math.ceil(wait)} s",
                [{"loc": ["client"], "msg": f"at most {self.per_minute} a minute"}],
                headers=[(b"retry-after", str(math.ceil(wait)).encode())],
            )
        return await self.app(scope, receive, send)

    def take(self, host: str) -> float:
        """0 when `host` may send one more now, else the seconds until it may."""
        return self.store.open().take(host, self.per_minute)
