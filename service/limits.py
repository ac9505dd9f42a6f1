"""ASGI middleware that refuses oversized request bodies before anything reads them."""

from __future__ import annotations

from service.errors import Receive, send_error


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
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:  # read at most max_bytes (+ one chunk), whatever the header said
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(send)
        return await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, send) -> None:
        await send_error(
            send,
            413,
            f"the request body is over {self.max_bytes} bytes",
            [{"loc": ["body"], "msg": f"at most {self.max_bytes} bytes"}],
            [(b"connection", b"close")],  # the rest of the body is never read
        )


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
