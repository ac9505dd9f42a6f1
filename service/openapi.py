"""`/docs.json`: BentoML's OpenAPI document, made to say what the routes do: the request
body is required and JSON only, and the 400, 413, 415 and 503 answers (and /feedback's 404
and 429) carry `ErrorResponse` (service/errors.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from service.errors import ERROR_SCHEMA, ERRORS, ROUTE_ERRORS, Receive, Send


async def serve_document(
    app, routes: Mapping[str, type[BaseModel]], scope, receive: Receive, send: Send
) -> None:
    """Answer GET /docs.json with the app's document, patched for the JSON `routes`."""
    captured: dict[str, Any] = {"body": b""}

    async def capture(message: dict) -> None:
        if message["type"] == "http.response.start":
            captured["start"] = message
        elif message["type"] == "http.response.body":
            captured["body"] += message.get("body", b"")

    await app(scope, receive, capture)
    start = captured["start"]
    body = captured["body"]
    if start["status"] == 200:
        body = json.dumps(patch(json.loads(body), routes)).encode()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def patch(document: dict, routes: Mapping[str, type[BaseModel]]) -> dict:
    """The document with each JSON route's body required, JSON only, its schema the route's
    own model as pydantic states it (BentoML keeps one branch of a top-level anyOf), and its
    error answers."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, model in routes.items():
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        request = operation.setdefault("requestBody", {})
        request["required"] = True
        request["content"] = {"application/json": {"schema": schema}}
        ok = operation.get("responses", {}).get("200")
        errors = {**ERRORS, **ROUTE_ERRORS.get(path, {})}
        operation["responses"] = {
            "200": ok,
            **{
                str(status): {
                    "description": description,
                    "content": {"application/json": {"schema": ref}},
                }
                for status, description in sorted(errors.items())
            },
        }
    return document
