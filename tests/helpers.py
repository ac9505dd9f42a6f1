"""Test helpers: a loopback HTTP server with scripted faults, and dict merging."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def deep_update(base: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


class LoopbackServer:
    """Serves a folder on 127.0.0.1. `faults[name]` is a list of what the next requests for
    that file get: an HTTP status (e.g. 503), "truncate" (half the body, full length header)
    or "tamper" (one byte changed); an empty list serves the file as is."""

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
                if isinstance(fault, int):
                    self.send_error(fault)
                    return
                if fault == "tamper":
                    body = body.replace(b"entailment", b"entailmenT", 1)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
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


PROJECT_FILES = [
    "klue_nli",
    "stages",
    "flows",
    "service",
    "dvc.yaml",
    "params.yaml",
    "bentofile.yaml",
    ".dvc/config",
    ".gitignore",
]


def make_project(root: Path, dest: Path, env: dict) -> Path:
    """A scratch git checkout of the project, for tests that run DVC and change params.yaml."""
    dest.mkdir()
    for name in PROJECT_FILES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True)
    return dest


def project_env(**extra: str) -> dict:
    """The environment for commands in a scratch project: this venv first on PATH, a git
    identity that needs no git config, and the project's embedded MLflow store."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "test"
        env[f"GIT_{role}_EMAIL"] = "test@example.invalid"
    env.update(extra)
    return env


def run_module(cwd: Path, env: dict, *args: str, timeout: float = 300) -> str:
    """`python -m <args>` with this interpreter; fails the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
