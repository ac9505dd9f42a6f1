"""ASGI middleware: which requests reach the service's routes at all.

- **Host names.** A request whose `Host` is not in `serve.allowed_hosts` (or
  KLUE_NLI_ALLOWED_HOSTS, comma-separated: the container image's) is refused with 400: a page
  on another site that a DNS rebinding points at this machine names its own host, so it
  cannot post corrections to a service on loopback. `*` answers any name.
- **Known paths.** A path the service does not serve is answered 404 here, in the project's
  error shape: BentoML's Swagger files and FastAPI's documentation routes are never reached.
"""

from __future__ import annotations

import os

from service.errors import Receive, Send, send_error

HOSTS_ENV = "KLUE_NLI_ALLOWED_HOSTS"
# What the service serves: the page, the JSON routes and their OpenAPI document (JsonContract
# answers it), and BentoML's probes and metrics. BentoML's Swagger UI and static files and
# FastAPI's documentation routes are not among them.
KNOWN_PATHS = frozenset(
    {
        "/",
        "/api",
        "/predict",
        "/feedback",
        "/docs.json",
        "/livez",
        "/healthz",
        "/readyz",
        "/metrics",
    }
)


def allowed_hosts(configured: tuple[str, ...]) -> frozenset[str]:
    """The host names answered: KLUE_NLI_ALLOWED_HOSTS when set, else `configured`."""
    named = os.environ.get(HOSTS_ENV)
    hosts = [h.strip() for h in named.split(",")] if named else list(configured)
    return frozenset(h.lower() for h in hosts if h)


def host_name(header: bytes) -> str:
    """The name in a Host header, without its port: `[::1]:3000` -> `::1`."""
    value = header.decode("latin-1").strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    def __init__(self, app, hosts: frozenset[str]) -> None:
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = hosts

    async def __call__(self, scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.any_host:
            host = host_name(dict(scope["headers"]).get(b"host", b""))
            if host not in self.hosts:
                return await send_error(
                    send,
                    400,
                    "this service does not answer to that host name (serve.allowed_hosts)",
                    [{"loc": ["header", "host"], "msg": "not an allowed host name"}],
                )
        if scope["path"] not in KNOWN_PATHS:
            return await send_error(
                send, 404, "no such route", [{"loc": ["path"], "msg": "not a route"}]
            )
        return await self.app(scope, receive, send)
