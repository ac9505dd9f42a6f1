"""The service's JSON routes, answered in one pass in front of BentoML: what the OpenAPI
document says is what the routes do.

- A POST to a JSON route (`/api`, `/predict`, `/feedback`) must say
  `Content-Type: application/json`, else 415.
- Its body is read once, then parsed and validated in one pass by the route's pydantic model
  (`model_validate_json`: pydantic-core's parser builds the model straight from the bytes,
  with no Python dict in between); a body that is not JSON or not valid is a 400 in this
  project's words (service/errors.py has the one error shape).
- The service's handler for the route gets the validated model, and its answer is
  serialized once (`model_dump_json`). BentoML's own route for the same path would read,
  parse and validate the body a second time: it stays declared for the OpenAPI document and
  BentoML's clients, whose requests this answers the same way.
- `/docs.json` documents exactly that (service/openapi.py).

Everything outside this middleware still applies: BentoML's concurrency limit (its access
log, per-path request metrics and the JSON routes' trace spans are off by default:
service.py), and this project's request metrics, headers, guard, arrival stamp, body limit
and rate limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ValidationError

from service import openapi
from service.errors import (
    ERRORS,
    ROUTE_ERRORS,
    Receive,
    Send,
    send_error,
    send_json,
    shaped_errors,
    validation_failure,
)

log = logging.getLogger("service")
Handler = Callable[[BaseModel], Awaitable[BaseModel]]


class Route(NamedTuple):
    """A JSON route: the model its body must fit, and the name of the service's method that
    answers it (called with the validated model)."""

    model: type[BaseModel]
    handler: str


class JsonContract:
    """ASGI middleware: the content type, the JSON and the fields of each JSON route are
    checked once here, the service's handler answers, and error answers get one shape."""

    def __init__(self, app, routes: dict[str, Route]) -> None:
        self.app = app
        self.routes = routes
        self.models = {path: route.model for path, route in routes.items()}

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/docs.json" and method == "GET":
            return await openapi.serve_document(self.app, self.models, scope, receive, send)
        route = self.routes.get(path)
        if route is None or method != "POST":
            return await self.app(scope, receive, shaped_errors(send, ROUTE_ERRORS.get(path)))
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
            request = route.model.model_validate_json(body)
        except ValidationError as exc:
            return await send_error(send, 400, *_refusal(route.model, body, exc))
        handler: Handler = getattr(bentoml.get_current_service(), route.handler)
        return await answer(send, path, handler, request)


async def answer(send: Send, path: str, handler: Handler, request: BaseModel) -> None:
    """The handler's answer as JSON, or its error in the project's shape: a 4xx with the
    handler's own message, a 5xx with the route's line for that status."""
    try:
        result = await handler(request)
    except BentoMLException as exc:
        status = exc.error_code.value
        said = {**ERRORS, **ROUTE_ERRORS.get(path, {})}
        message = said.get(status, str(exc)) if status >= 500 else str(exc)
        # a refusal that knows when to come back says so (a full review queue)
        wait = getattr(exc, "retry_after_s", None)
        if wait is not None:
            message = str(exc)
        headers = [(b"retry-after", str(wait).encode())] if wait is not None else None
        message = message or said.get(status, "the request failed")
        return await send_error(send, status, message, headers=headers)
    except Exception:  # a bug: logged with its traceback, answered without one
        log.exception("POST %s failed", path)
        return await send_error(send, 500, "an unexpected error: see the server log")
    await send_json(send, 200, result.model_dump_json().encode())


def _refusal(model: type[BaseModel], body: bytes, exc: ValidationError) -> tuple[str, list]:
    """The 400's message and detail. A field that is wrong is named. For a body
    pydantic-core's parser refuses, Python's own parser says why: it also reads what that
    one refuses outright (an escaped lone surrogate), so that field is named too. Only a
    refused body pays for the second parse."""
    if exc.errors()[0]["type"] != "json_invalid":
        return validation_failure(exc)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as refused:
        # Besides a decode error, the parser refuses an integer of more than 4,300 digits
        # (ValueError) and a value nested past the interpreter's recursion limit.
        reason = _parse_failure(refused)
        return f"the body is not valid JSON ({reason})", [{"loc": ["body"], "msg": reason}]
    try:
        model.model_validate(data)
    except ValidationError as invalid:
        return validation_failure(invalid)
    reason = exc.errors()[0]["msg"].removeprefix("Invalid JSON: ")
    return f"the body is not valid JSON ({reason})", [{"loc": ["body"], "msg": reason}]


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
