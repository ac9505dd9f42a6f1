"""A serving worker killed under load: how long until the service answers again, and what is
lost. The test suite asserts on it (tests/e2e/test_service.py); `make recovery` measures the
demo's model with the ONNX graph made at worker start and stored by `make export`, side by
side, into benchmarks/recovery.json.

Closed loop: `clients` threads, each sending the next pair as soon as the last is answered, on
a fresh connection each time (as browsers and most clients reconnect), with a timeout longer
than any restart. The worker is SIGKILLed mid-load; the BentoML arbiter keeps the listening
socket and starts a new worker, so requests that arrive meanwhile wait in the socket's backlog
and are answered by it. Only what the dead worker had accepted (its batch in flight and its
queue, at most one request per client) is lost.

    python -m benchmarks.recovery          # after make demo: writes benchmarks/recovery.json
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAIR = {"premise": "오늘은 비가 많이 온다.", "hypothesis": "날씨가 맑다."}


def worker_pids(server_pid: int) -> list[int]:
    """The serving workers under a `bentoml serve` process (not the arbiter itself)."""
    return [
        p.pid
        for p in psutil.Process(server_pid).children(recursive=True)
        if any("_bentoml_impl.worker" in part for part in p.cmdline())
    ]


def kill_under_load(
    url: str, server_pid: int, clients: int = 8, warm_s: float = 3.0, after_s: float = 3.0
) -> dict:
    """Load `url`/api with `clients` closed-loop clients, SIGKILL the worker after `warm_s`,
    keep the load on until `after_s` after the first answer of the new worker; the figures."""
    [victim] = worker_pids(server_pid)
    log: list[tuple[float, float, bool]] = []  # sent, done, answered (200)
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                ok = requests.post(url + "/api", json=PAIR, timeout=120).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                log.append((sent, time.perf_counter(), ok))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(warm_s)
    killed = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = killed + 120
    first = None
    while time.perf_counter() < deadline:
        with lock:
            after = [done for sent, done, ok in log if ok and sent > killed]
        if after:
            first = min(after)
            if time.perf_counter() > first + after_s:
                break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=130)
    before = [row for row in log if row[0] <= killed]
    later = [row for row in log if row[0] > killed]
    replacement = worker_pids(server_pid)
    return {
        "clients": clients,
        "answered_before_kill": sum(ok for s, d, ok in before if d <= killed),
        # answers again: from the kill to the first answer to a request sent after it
        "recovery_s": None if first is None else first - killed,
        "lost": sum(not ok for _, _, ok in log),
        "lost_sent_after_kill": sum(not ok for _, _, ok in later),
        "sent_after_kill": len(later),
        "answered_after_kill": sum(ok for _, _, ok in later),
        "new_worker": bool(replacement) and replacement != [victim],
    }


def _measure(home: Path, label: str, port: int) -> dict:
    from devtools.sandbox import bentoml_server

    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}
    server = bentoml_server(ROOT, port, home / f"serve-{label}.log", env)
    try:
        started = time.perf_counter()
        server.wait_ready(timeout=300)
        ready_s = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}"
        for _ in range(10):
            requests.post(url + "/api", json=PAIR, timeout=60)
        figures = kill_under_load(url, server.proc.pid)
    finally:
        server.stop()
    return {"graph": label, "first_start_ready_s": ready_s, **figures}


def scratch_store(home: Path, model_path: Path, with_graph: bool) -> None:
    """A BentoML home holding one model: a copy of `model_path` (a stored version of the
    service's model), with or without its ONNX graph. The user's own store is not touched."""
    from klue_nli.core.manifest import write_manifest
    from klue_nli.inference.onnx import GRAPH_DIR

    # the store's layout: models/<name>/<version>/ and models/<name>/latest naming it
    dest = home / "models" / model_path.parent.name / model_path.name
    shutil.copytree(model_path, dest)
    (dest.parent / "latest").write_text(model_path.name)
    if not with_graph:
        shutil.rmtree(dest / GRAPH_DIR)
        write_manifest(dest)


def main() -> None:
    from devtools.sandbox import free_port
    from devtools.stamp import run_stamp
    from klue_nli.inference.bento import latest
    from klue_nli.inference.onnx import GRAPH_DIR

    model = latest()
    if model is None or not (Path(model.path) / GRAPH_DIR).is_dir():
        print("recovery: no exported model with its graph; run `make demo` first", file=sys.stderr)
        raise SystemExit(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="klue-nli-recovery-") as tmp:
        # before: the graph exported at each worker start; after: stored by `make export`
        for label, with_graph in (("exported at start", False), ("stored by make export", True)):
            home = Path(tmp) / label.split()[0]
            scratch_store(home, Path(model.path), with_graph)
            rows.append(_measure(home, label, free_port()))
            print(json.dumps(rows[-1]), flush=True)
    out = {**run_stamp(), "model": dict(model.info.labels), "cpus": os.cpu_count(), "runs": rows}
    (HERE / "recovery.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
