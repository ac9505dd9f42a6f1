"""Test helpers: a loopback HTTP server with scripted faults, dict merging, one request
through an ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextlib.contextmanager
def bentoml_home(home: Path) -> Iterator[None]:
    """Point this process's BentoML at `home` (its model and bento stores) for a while.

    BentoML reads BENTOML_HOME once per process and caches its stores; the tests share one
    process, so each test pins its own. Servers and CLIs started by a test read the env var.
    (BentoML's dependency container is internal API; tests only.)"""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    for sub in ("models", "bentos", "tmp", "envs"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        c = BentoMLContainer
        for provider, value in (
            (c.bentoml_home, str(home)),
            (c.model_store_dir, str(home / "models")),
            (c.bento_store_dir, str(home / "bentos")),
            (c.tmp_bento_store_dir, str(home / "tmp")),
            (c.env_store_dir, str(home / "envs")),
            (c.model_store, ModelStore(str(home / "models"))),
            (c.bento_store, BentoStore(str(home / "bentos"))),
            (c.tmp_bento_store, BentoStore(str(home / "tmp"))),
        ):
            stack.enter_context(provider.patch(value))
        yield


def write_calibration(folder: Path, temperature: float = 1.0, unsure_below: float = 0.0) -> None:
    """calibration.json as train writes it, for a model folder a test builds by hand (the
    default: probabilities as the softmax gives them, and no answer unsure)."""
    from klue_nli.network.calibration import Calibration, write_calibration

    write_calibration(folder, Calibration(temperature, unsure_below, 0.9, True, 0, 0.0, 0.0))


def deep_update(base: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


class LoopbackServer:
    """Serves a folder on 127.0.0.1. `faults[name]` is a list of what the next requests for
    that file get: an HTTP status (e.g. 503), "truncate" (half the body, full length header,
    then a clean close), "reset" (half the body, then a TCP reset), "slow" (no answer for
    `stall_s`), "stall" (half the body, then silence for `stall_s`) or "tamper" (one byte
    changed); an empty list serves the file as is."""

    stall_s = 2.0

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.faults: dict[str, list] = defaultdict(list)
        self.hits: dict[str, int] = defaultdict(int)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.hits[name] += 1
                path = server.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                fault = server.faults[name].pop(0) if server.faults[name] else None
                if fault == "slow":
                    time.sleep(server.stall_s)
                if isinstance(fault, int):
                    self.send_error(fault)
                    return
                if isinstance(fault, tuple) and fault[0] == "retry-after":  # 429, Retry-After
                    self.send_response(429)
                    self.send_header("Retry-After", str(fault[1]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "redirect-loop":  # to itself, for ever
                    server.faults[name].insert(0, "redirect-loop")
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "tamper":
                    body = body.replace(b"entailment", b"entailmenT", 1)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault in ("truncate", "reset", "stall"):
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    if fault == "stall":
                        time.sleep(server.stall_s)
                    if fault == "reset":  # SO_LINGER 0: close() sends RST, not FIN
                        linger = struct.pack("ii", 1, 0)
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        self.connection.close()
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/klue-nli-v1.1"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class KillingProxy:
    """An HTTP proxy on 127.0.0.1 in front of a real server (MLflow here). Requests matching
    `is_write` are counted; the `kill_at`-th one is never forwarded: the client process
    `victim` is SIGKILLed instead, i.e. it dies between two of its writes."""

    def __init__(self, target_port: int, is_write) -> None:
        self.victim: subprocess.Popen | None = None
        self.kill_at: int | None = None
        self.writes: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if is_write(self.command, self.path):
                    proxy.writes.append(f"{self.command} {self.path} {body!r}")
                    if len(proxy.writes) == proxy.kill_at and proxy.victim is not None:
                        os.kill(proxy.victim.pid, signal.SIGKILL)
                        proxy.victim.wait()
                        self.close_connection = True
                        return
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=120)
                skip = {"host", "connection", "content-length", "transfer-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                conn.request(self.command, self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def arm(self, victim: subprocess.Popen, kill_at: int) -> None:
        self.writes, self.victim, self.kill_at = [], victim, kill_at

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Webhook:
    """A loopback HTTP server that records the JSON bodies POSTed to `path` (a chat webhook's
    path is its secret; any other path is a 404)."""

    def __init__(self, path: str = "/") -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != path:
                    self.send_response(404)
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def asgi_call(app, path: str = "/api", host: bytes = b"127.0.0.1:3000", client=("127.0.0.1", 5)):
    """One request through `app`: (status, headers, body)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"host", host)] if host is not None else [],
        "client": client,
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body
