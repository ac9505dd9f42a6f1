"""The service's HTTP contract, in front of BentoML: what the OpenAPI document says is what
the routes do.

- A POST to a JSON route (`/api`, `/predict`) must say `Content-Type: application/json`,
  else 415; its body must be JSON, else 400; it is validated by the route's own pydantic
  model before BentoML sees it, and a 400 says what is wrong in this project's words:
  `{"error": "2 fields invalid: premise: field required; hypothesis: field required",
  "detail": [{"loc": ["body", "premise"], "msg": "field required"}, ...]}`.
- Every error the app sends (a 503 when the queue is full, say) has the same shape.
- `/docs.json` documents exactly that: the request body is required and JSON only, and the
  400, 413, 415 and 503 answers carry `ErrorResponse`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

ERRORS = {
    400: "the request is invalid",
    413: "the request body is too large",
    415: "the request body is not JSON",
    503: "the service is overloaded: try again shortly",
}
ERROR_SCHEMA = {
    "type": "object",
    "title": "ErrorResponse",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in one line"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


def error_body(message: str, detail: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps({"error": message, "detail": detail or []}, ensure_ascii=False).encode()


async def send_error(
    send: Send, status: int, message: str, detail: list[dict[str, Any]] | None = None
) -> None:
    body = error_body(message, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _message(error: dict) -> str:
    """pydantic's error, said plainly (no class names, no links)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    plain = {
        "missing": "field required",
        "extra_forbidden": "unknown field",
        "string_type": "must be a string",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "must hold a non-space character and no control characters",
        "string_unicode": "must be valid Unicode (no lone surrogates)",
        "list_type": "must be a list",
        "model_type": "must be a JSON object",
        "model_attributes_type": "must be a JSON object",
    }
    if kind in plain:
        return plain[kind]
    if kind == "string_too_long":
        return f"longer than {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"must hold at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must hold at most {ctx.get('max_length')} items"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][:1].lower() + error["msg"][1:]


def validation_failure(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """The one-line `error` and the `detail` list of a failed validation."""
    detail = [
        {"loc": ["body", *e["loc"]], "msg": _message(e)}
        for e in exc.errors(include_url=False, include_context=True)
    ]
    where = [".".join(str(p) for p in d["loc"][1:]) or "body" for d in detail]
    n = len(detail)
    parts = "; ".join(f"{w}: {d['msg']}" for w, d in zip(where, detail, strict=True))
    return f"{n} field{'s' if n > 1 else ''} invalid: {parts}", detail


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
            return await self._document(scope, receive, send)
        model = self.models.get(path)
        if model is None or method != "POST":
            return await self.app(scope, receive, shaped_errors(send))
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
        return await self.app(scope, replay_body(body, receive), shaped_errors(send))

    async def _document(self, scope, receive: Receive, send: Send) -> None:
        """BentoML's OpenAPI document, made to say what the routes do."""
        captured: dict[str, Any] = {"body": b""}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["start"] = message
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        await self.app(scope, receive, capture)
        start = captured["start"]
        body = captured["body"]
        if start["status"] == 200:
            body = json.dumps(self.patch(json.loads(body))).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def patch(self, document: dict) -> dict:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorResponse"] = ERROR_SCHEMA
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path in self.models:
            operation = document.get("paths", {}).get(path, {}).get("post")
            if operation is None:
                continue
            request = operation.setdefault("requestBody", {})
            request["required"] = True
            request["content"] = {
                "application/json": request.get("content", {}).get(
                    "application/json", {"schema": {}}
                )
            }
            ok = operation.get("responses", {}).get("200")
            operation["responses"] = {
                "200": ok,
                **{
                    str(status): {
                        "description": description,
                        "content": {"application/json": {"schema": ref}},
                    }
                    for status, description in ERRORS.items()
                },
            }
        return document


def _parse_failure(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number too large to read" if "digits" in str(exc) else "not readable as JSON"


def shaped_errors(send: Send) -> Send:
    """`send` for the app's own answers: an error answer (4xx, 5xx) becomes
    `{"error", "detail"}`, keeping the app's message where it gave one."""
    state: dict[str, Any] = {}

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            state["start"], state["body"] = message, b""
            return None
        if "start" not in state:
            return await send(message)
        state["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return None
        start = state.pop("start")
        status = start["status"]
        try:
            original = json.loads(state["body"])
            text = original.get("error") if isinstance(original, dict) else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            text = state["body"].decode("utf-8", "replace").strip() or None
        body = error_body(str(text or ERRORS.get(status, "the request failed")))
        headers = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


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
