"""Local processes that the tests and the benchmarks both run: a server on a free loopback
port (stopped by PID, with its workers), a scratch git checkout of the project, and
`python -m` with this interpreter. Nothing here is used by the pipeline itself."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A subprocess in its own process group, so stopping it stops its workers too."""

    def __init__(self, args: list[str], health_url: str, log: Path, cwd: Path, env: dict) -> None:
        self.health_url = health_url
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")
            if self.health_url.startswith("tcp://"):  # a server that speaks no HTTP
                host, port = self.health_url.removeprefix("tcp://").split(":")
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    return
                except OSError:
                    pass
            else:
                try:
                    if requests.get(self.health_url, timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.health_url} not ready in {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


def bento_service(root: Path) -> str:
    """The service's import string, as bentofile.yaml names it (the one place it is written)."""
    import yaml

    return yaml.safe_load((root / "bentofile.yaml").read_text(encoding="utf-8"))["service"]


def bentoml_server(root: Path, port: int, log: Path, env: dict, *extra: str) -> Server:
    """`bentoml serve` of the project's service on 127.0.0.1:`port` (its default host: no
    --host is passed unless in `extra`), started from `root`; ready when /readyz answers."""
    service = bento_service(root)
    args = [sys.executable, "-m", "bentoml", "serve", service, "--port", str(port), *extra]
    return Server(args, f"http://127.0.0.1:{port}/readyz", log, root, env)


def relabelled_store(models: Path, dest: Path, **labels: str | None) -> Path:
    """A copy of a BentoML model store (`models`, hard links: instant, nothing written to the
    original) whose models carry `labels` changed (None: removed): the same model, stored as
    another export or another variant would leave it."""
    import yaml

    shutil.copytree(models, dest, copy_function=_link_or_copy)
    for info in dest.rglob("model.yaml"):
        doc = yaml.safe_load(info.read_text(encoding="utf-8"))
        for key, value in labels.items():
            if value is None:
                doc["labels"].pop(key, None)
            else:
                doc["labels"][key] = value
        fresh = info.with_suffix(".tmp")  # a new file: the linked original stays as it was
        fresh.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        os.replace(fresh, info)
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


PROJECT_FILES = [
    "klue_nli",
    "stages",
    "flows",
    "service",
    "recipes",
    "dvc.yaml",
    "params.yaml",
    "feedback/accepted.jsonl",
    "bentofile.yaml",
    "prefect.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".gitignore",
]


def make_project(root: Path, dest: Path, env: dict) -> Path:
    """A scratch git checkout of the project, for tests that run DVC and change params.yaml.
    Its params.yaml is `root`'s as committed: a recipe run in `root` rewrites the file
    (`dvc exp run -S`), and its values must not become the scratch project's defaults."""
    dest.mkdir()
    for name in PROJECT_FILES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / name)
    committed = subprocess.run(
        ["git", "show", "HEAD:./params.yaml"], cwd=root, capture_output=True, text=True
    )
    if committed.returncode == 0:  # else not a git checkout: the file as it is
        (dest / "params.yaml").write_text(committed.stdout, encoding="utf-8")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True)
    return dest


def project_env(**extra: str) -> dict:
    """The environment for commands in a scratch project: this venv first on PATH, a git
    identity that needs no git config, and the project's embedded MLflow store."""
    from klue_nli.core.env import absolute_sources

    # the stand-ins as absolute paths: the scratch project is another folder
    env = absolute_sources({k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "test"
        env[f"GIT_{role}_EMAIL"] = "test@example.invalid"
    env.update(absolute_sources(extra))
    return env


def run_module(cwd: Path, env: dict, *args: str, timeout: float = 300) -> str:
    """`python -m <args>` with this interpreter; its output, or RuntimeError with the output."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        raise RuntimeError(f"python -m {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout
