"""The one shape of every error the service sends: `{"error": "<one line>", "detail":
[{"loc": [...], "msg": "..."}]}`, pydantic's validation errors said in this project's words,
and the wrapper that gives the app's own error answers (a 503 when the queue is full, say)
the same shape."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

ERRORS = {
    400: "the request is invalid",
    413: "the request body is too large",
    415: "the request body is not JSON",
    503: "the service is overloaded: try again shortly",
}
# Only where a route gives them (POST /feedback): the answer it corrects is no longer held,
# and one client sent too many.
FEEDBACK_ERRORS = {
    # answers are held in memory by the worker that gave them (serve.workers: 1 by default);
    # with several workers an answer_id another worker gave is unknown here
    404: (
        "the answer named is not held by the worker that took the correction (each worker "
        "holds its own last feedback.recent_answers answers): send the premise and "
        "hypothesis with it"
    ),
    429: "too many corrections from this address",
    503: "the feedback store is unavailable: try again shortly",
}
# error answers a route gives besides the common ones (its 503 said its own way)
ROUTE_ERRORS = {"/feedback": FEEDBACK_ERRORS}
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


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    more: bool = False,
) -> None:
    """A JSON answer, straight to the ASGI `send`; more=True: its bytes go out whole (the
    client has them, by their content-length), but the response stays open until the caller
    sends the final, empty body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def send_error(
    send: Send,
    status: int,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_json(send, status, error_body(message, detail), headers)


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


def _app_message(body: bytes) -> str | None:
    """The message of an error answer the app gave: its `error` (BentoML sends a 4xx as a
    one-item list holding that object), or its text."""
    try:
        original = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body.decode("utf-8", "replace").strip() or None
    if isinstance(original, list) and len(original) == 1:
        original = original[0]
    return original.get("error") if isinstance(original, dict) else None


def shaped_errors(send: Send, fallback: dict[int, str] | None = None) -> Send:
    """`send` for the app's own answers: an error answer (4xx, 5xx) becomes
    `{"error", "detail"}`, keeping the app's message where it gave one. BentoML words a 5xx
    only as "an unexpected error": the route's own line for that status (`fallback`) says
    what happened instead."""
    said = {**ERRORS, **(fallback or {})}
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
        text = None if status >= 500 and status in said else _app_message(state["body"])
        body = error_body(str(text or said.get(status, "the request failed")))
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
