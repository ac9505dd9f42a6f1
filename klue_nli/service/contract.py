"""The service's HTTP contract, in front of BentoML: what the OpenAPI document says is what
the routes do.

- A POST to a JSON route (`/api`, `/predict`) must say `Content-Type: application/json`,
  else 415; its body must be JSON, else 400; it is validated by the route's own pydantic
  model before BentoML sees it, and a 400 says what is wrong in this project's words
  (klue_nli/service/errors.py has the one error shape).
- `/docs.json` documents exactly that (klue_nli/service/openapi.py).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError

from klue_nli.service import openapi
from klue_nli.service.errors import (
    ROUTE_ERRORS,
    Receive,
    Send,
    send_error,
    shaped_errors,
    validation_failure,
)


class JsonContract:
    """ASGI middleware: the content type, the JSON and the fields of each JSON route are
    checked here; error answers get one shape; the OpenAPI document says all of that."""

    def __init__(self, app, models: dict[str, type[BaseModel]]) -> None:
        self.app = app
        self.models = models

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/docs.json" and method == "GET":
            return await openapi.serve_document(self.app, self.models, scope, receive, send)
        model = self.models.get(path)
        shaped = shaped_errors(send, ROUTE_ERRORS.get(path))
        if model is None or method != "POST":
            return await self.app(scope, receive, shaped)
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        media = content_type.split(";")[0].strip().lower()
        if media != "application/json":
            shown = media or "none"
            return await send_error(
                send,
                415,
                f"content type {shown!r} is not accepted: send application/json",
                [{"loc": ["header", "content-type"], "msg": "must be application/json"}],
            )
        body = await _read(receive)
        if body is None:
            return None  # the client went away
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            # Besides a decode error, the parser refuses an integer of more than 4,300 digits
            # (ValueError) and a value nested past the interpreter's recursion limit: each is
            # the client's body, so each is a 400 now, never an unhandled error.
            reason = _parse_failure(exc)
            return await send_error(
                send,
                400,
                f"the body is not valid JSON ({reason})",
                [{"loc": ["body"], "msg": reason}],
            )
        try:
            model.model_validate(data)
        except ValidationError as exc:
            message, detail = validation_failure(exc)
            return await send_error(send, 400, message, detail)
        return await self.app(scope, replay_body(body, receive), shaped)


def _parse_failure(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number too large to read" if "digits" in str(exc) else "not readable as JSON"


async def _read(receive: Receive) -> bytes | None:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


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
