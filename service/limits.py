"""ASGI middleware that refuses oversized request bodies before anything reads them."""

from __future__ import annotations

import asyncio
import contextlib

from service.errors import Receive, error_body, send_json

# After a 413, the rest of the body is read and dropped for a while (lingering close, as web
# servers do): a client that writes its whole body before reading the answer (Python's
# urllib) then reads the 413 instead of a reset connection. Bounded in bytes and in time.
DRAIN_BYTES = 32 * 2**20
DRAIN_S = 2.0


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, declared or streamed (chunked),
    before the body reaches validation or the model."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await self._refuse(send, receive)
        chunks, size, more = [], 0, True
        while more:  # read at most max_bytes (+ one chunk), whatever the header said
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(send, receive)
        return await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, send, receive: Receive) -> None:
        """The 413 goes out at once; then the rest of the body is drained (bounded) before the
        response ends and the connection closes."""
        limit = f"at most {self.max_bytes} bytes"
        body = error_body(
            f"the request body is over {self.max_bytes} bytes", [{"loc": ["body"], "msg": limit}]
        )
        await send_json(send, 413, body, [(b"connection", b"close")], more=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_drain(receive), DRAIN_S)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of a request body, up to DRAIN_BYTES."""
    dropped = 0
    while dropped < DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def replay_body(body: bytes, receive: Receive) -> Receive:
    """`receive` for the app once the body has been read here: the body in one message,
    then whatever the client sends next (a disconnect)."""
    done = False

    async def replay() -> dict:
        nonlocal done
        if done:
            return await receive()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
