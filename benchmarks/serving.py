"""`make bench`, serving: the servers of one comparison start once, then every load phase runs
ROUNDS times, interleaved (round 1: the baseline at 1 client, the service at 1 client, the
baseline at 8, ...; then round 2), so drift on the shared machine hits both sides alike.
Figures are judged on the median over rounds; the min and max are kept beside it.

Each phase records what limited it: the load generator's own CPU (it shares the cores), each
server process's CPU, and the service's own metrics on /metrics (pairs per model call, padded
tokens, queue wait, model time), from which a request's time splits into outside the app
(HTTP, client), queueing, the model, and the rest of the app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import psutil
import requests

from devtools.sandbox import Server, bento_service, free_port, relabelled_store
from klue_nli.core.params import load_params
from klue_nli.inference.predictor import resolve_quantize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = max(3, int(os.environ.get("BENCH_ROUNDS", "3")))
DURATION = min(float(os.environ.get("BENCH_DURATION", "6")), 60.0)
CONCURRENCY = (1, 8, 32)
API_DURATION = "klue_nli_request_duration_seconds"  # the service's, by route


def load(url: str, concurrency: int = 0, rate: float = 0, duration: float = DURATION) -> dict:
    """Load from a separate process (benchmarks/loadgen.py): closed loop with `concurrency`
    clients, or open loop at `rate` requests/s; its JSON figures."""
    args = ["--url", url, "--duration", str(duration)]
    args += ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def warm(url: str) -> None:
    for _ in range(20):
        requests.post(url + "/api", json={"premise": "워밍업", "hypothesis": "준비"}, timeout=30)


def process_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of a server and every process under it, with a short role name."""
    root = psutil.Process(pid)
    out = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times, cmd = proc.cpu_times(), " ".join(proc.cmdline())
        except psutil.Error:
            continue
        role = "worker" if "--worker-id" in cmd else "main"  # BentoML's worker processes
        out[proc.pid] = (role, times.user + times.system)
    return out


def cpu_shares(before: dict, after: dict, wall_s: float) -> dict:
    """Each process's share of one core over the phase, busiest first, and all together."""
    used = {pid: (r, cpu - before.get(pid, (r, 0.0))[1]) for pid, (r, cpu) in after.items()}
    shares = sorted(((role, cpu / wall_s) for role, cpu in used.values()), key=lambda x: -x[1])
    return {
        "per_process_core_share": [{"role": r, "core_share": round(s, 3)} for r, s in shares],
        "core_share": sum(s for _, s in shares),
        "cpu_share": sum(s for _, s in shares) / (os.cpu_count() or 1),
    }


def scrape(url: str) -> dict[str, float]:
    """/metrics as {name|label values: value}, summed over workers; the request metrics for
    /api only."""
    out: dict[str, float] = defaultdict(float)
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        if name.startswith(API_DURATION) and 'route="/api"' not in labels:
            continue
        le = re.search(r'le="([^"]+)"', labels)
        kind = re.search(r'kind="([^"]+)"', labels)
        key = name + (f"|{le.group(1)}" if le else "") + (f"|{kind.group(1)}" if kind else "")
        out[key] += float(value)
    return out


def service_stats(before: dict, after: dict, client_mean_ms: float | None) -> dict:
    """Where a request's time went during one phase, from the /metrics difference."""

    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests_ = d(f"{API_DURATION}_count")
    batches = d("klue_nli_batch_pairs_count")
    if not requests_ or not batches:
        return {}
    in_app = 1000 * d(f"{API_DURATION}_sum") / requests_
    queue = 1000 * d("klue_nli_queue_wait_seconds_sum") / d("klue_nli_queue_wait_seconds_count")
    model = 1000 * d("klue_nli_model_seconds_sum") / batches
    edges = sorted(
        (float(k.split("|")[1]), k) for k in after if k.startswith("klue_nli_batch_pairs_bucket")
    )
    histogram, below = {}, 0.0
    for edge, key in edges:  # cumulative buckets -> calls per bucket
        count = d(key)
        if count - below:
            histogram["<=" + (f"{edge:g}" if edge != float("inf") else "inf")] = count - below
        below = count
    padded, real = d("klue_nli_tokens_total|padded"), d("klue_nli_tokens_total|real")
    return {
        "model_calls": batches,
        "pairs_per_call": d("klue_nli_batch_pairs_sum") / batches,
        "pairs_per_call_histogram": histogram,
        "padded_tokens_per_call": d("klue_nli_batch_padded_tokens_sum") / batches,
        "padding_share": 1 - real / padded if padded else 0.0,
        "in_app_ms": in_app,
        "queue_ms": queue,
        "model_ms_per_call": model,
        "app_other_ms": in_app - queue - model,  # validation, answer, event loop
        "outside_app_ms": (client_mean_ms - in_app) if client_mean_ms else None,  # HTTP, client
    }


def phase(url: str, pid: int, metrics: bool, **load_args) -> dict:
    """One load phase with its CPU figures and, for the service, its /metrics split."""
    cpu0, m0 = process_cpu(pid), scrape(url) if metrics else {}
    out = load(url + "/api", **load_args)
    cpu1, m1 = process_cpu(pid), scrape(url) if metrics else {}
    out["server"] = cpu_shares(cpu0, cpu1, out["wall_s"])
    if metrics:
        out["service"] = service_stats(m0, m1, out.get("mean_ms"))
    return out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def closed_loop(servers: dict[str, tuple[str, int, bool]]) -> dict:
    """{server name: (url, pid, has service metrics)}: every server at every concurrency,
    ROUNDS times, interleaved; the runs and their medians."""
    runs: dict = {name: {f"c{c}": [] for c in CONCURRENCY} for name in servers}
    for _ in range(ROUNDS):
        for c in CONCURRENCY:
            for name, (url, pid, metrics) in servers.items():
                runs[name][f"c{c}"].append(phase(url, pid, metrics, concurrency=c))
    summary = {
        name: {key: summarise(phases) for key, phases in by_c.items()}
        for name, by_c in runs.items()
    }
    return {"runs": runs, "summary": summary}


def summarise(phases: list[dict]) -> dict:
    def field(path: str) -> list[float]:
        vals = []
        for p in phases:
            v = p
            for part in path.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if v is not None:
                vals.append(v)
        return vals

    out = {"errors": sum(p.get("errors", p.get("other_errors", 0)) for p in phases)}
    for path in (
        "rps",
        "p50_ms",
        "p99_ms",
        "loadgen_cpu_share",
        "server.cpu_share",
        "service.pairs_per_call",
        "service.padding_share",
        "service.queue_ms",
        "service.model_ms_per_call",
        "service.app_other_ms",
        "service.outside_app_ms",
    ):
        if vals := field(path):
            out[path.split(".")[-1] if path.startswith("service.") else path.replace(".", "_")] = (
                spread(vals)
            )
    # the least busy server process's share of a core (workers only): an idle worker shows
    idle = [
        min(
            p["core_share"] for p in ph["server"]["per_process_core_share"] if p["role"] == "worker"
        )
        for ph in phases
        if any(
            p["role"] == "worker" for p in ph.get("server", {}).get("per_process_core_share", [])
        )
    ]
    if idle:
        out["least_busy_worker_core_share"] = spread(idle)
    return out


def ratios(runs: dict, name: str, baseline: str) -> dict:
    """{cN: spread of name/baseline req/s, pairing the phases of the same round}."""
    return {
        key: spread(
            [a["rps"] / b["rps"] for a, b in zip(runs[name][key], runs[baseline][key], strict=True)]
        )
        for key in runs[name]
    }


def open_loop(url: str, pid: int, capacity: float, max_latency_ms: float, batch_ms: float) -> dict:
    """ROUNDS x (50 % of capacity, 150 % of it, then 1 client right after the overload)."""
    runs: dict = {"open50": [], "overload": [], "after_overload": []}
    for _ in range(ROUNDS):
        runs["open50"].append(phase(url, pid, True, rate=0.5 * capacity))
        runs["overload"].append(phase(url, pid, True, rate=1.5 * capacity))
        runs["after_overload"].append(phase(url, pid, True, concurrency=1, duration=5))
    bound = max_latency_ms + batch_ms  # "one batch": answered at most the limit plus a batch
    summary = {key: summarise(phases) for key, phases in runs.items()}
    for key in ("open50", "overload"):
        summary[key]["shed_503"] = sum(p["shed_503"] for p in runs[key])
        summary[key]["rate"] = statistics.median(p["rate"] for p in runs[key])
    summary["overload"]["bound_ms"] = bound
    return {"runs": runs, "summary": summary}


def service_copy(dest: Path, **serve) -> Path:
    """The service with its own params.yaml (serve.* overridden), to run beside another."""
    import yaml

    # the service reads the params.yaml beside its own folder; bentofile.yaml names it
    for name in ("klue_nli", "service"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "bentofile.yaml", dest)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["serve"].update(serve)
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return dest


def start(
    kind: str, root: Path, work: Path, model_dir: Path | None = None, env: dict | None = None
) -> tuple[Server, str]:
    """The Flask baseline (`kind` flask, on `model_dir`) or the service from `root` (serving
    the BentoML store's latest model); ready, warmed up, and its base URL. `env`: variables
    set for the server over this process's (PYTHONPATH included)."""
    port = free_port()
    if kind == "flask":
        args = ["benchmarks.flask_app", "--model-dir", str(model_dir), "--port", str(port)]
        health = "/health"
    else:
        args = ["bentoml", "serve", bento_service(root), "--host", "127.0.0.1"]
        args += ["--port", str(port)]
        health = "/readyz"
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{ROOT}", **(env or {})}
    if kind != "flask":
        # Its own BentoML home (the model store shared by a link): BentoML clears its
        # Prometheus folder at start, which would blank the metrics of a service already up.
        home = work / f"bentoml-home-{port}"
        home.mkdir()
        models = Path(os.environ["BENTOML_HOME"]) / "models"
        if root == ROOT:
            (home / "models").symlink_to(models)
        else:  # a service copy with its own serve.*: the same model, labelled to serve so
            serve = load_params(root / "params.yaml").serve
            quantize = resolve_quantize(serve.quantize, serve.runtime)
            relabelled_store(models, home / "models", served_runtime=serve.runtime,
                             served_quantize=quantize)  # fmt: skip
        env["BENTOML_HOME"] = str(home)
    server = Server(
        [sys.executable, "-m", *args], url + health, work / f"{kind}-{port}.log", root, env
    )
    server.wait_ready(timeout=300)
    warm(url)
    return server, url
