"""`make soak`: the BentoML service under steady closed-loop load for a fixed time.

Serves the small demo model (as `make bench` does) on a free loopback port, drives it with
SOAK_CLIENTS concurrent clients for SOAK_DURATION seconds (default 300), samples the resident
memory of the whole server process tree every second, and writes benchmarks/soak.json:
requests, errors, duration_s, rps, p50/p99, and rss_growth, the growth of RSS from the end of
the warm-up (the first fifth of the run, at least 10 s) to the end, as a fraction.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from devtools.sandbox import bentoml_server, free_port
from devtools.stamp import run_stamp
from klue_nli.core.env import apply_quiet_defaults, local_source
from klue_nli.core.io import atomic_write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children (BentoML runs workers as children)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # a worker may exit meanwhile
            total += p.memory_info().rss
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopped.wait(self.every_s):
            self.samples.append((time.monotonic() - start, tree_rss(self.pid)))


def rss_growth(samples: list[tuple[float, int]], warmup_s: float) -> tuple[int, int, float]:
    """RSS just after warm-up, the mean of the last 10 % of samples, and the growth between."""
    after = [rss for t, rss in samples if t >= warmup_s]
    if len(after) < 2:
        raise ValueError("too few RSS samples after warm-up; run longer")
    tail = after[-max(1, len(after) // 10) :]
    warm, end = after[0], sum(tail) / len(tail)
    return warm, int(end), (end - warm) / warm


def save_demo_model(params, folder: Path) -> Path:
    """The small random BERT of params.yaml's model.random, with kcbert's tokenizer."""
    from klue_nli.core.manifest import write_manifest
    from klue_nli.data.encoding import load_tokenizer
    from klue_nli.model.modeling import build_model
    from klue_nli.network.calibration import Calibration, write_calibration

    tokenizer = load_tokenizer(params.model.name_or_path, do_lower_case=False)
    tokenizer.model_max_length = params.featurize.max_seq_length
    model = build_model(params.model, params.labels, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_calibration(folder, Calibration.none_fitted())  # random weights: nothing to fit on
    write_manifest(folder)  # the service serves only verifiable model folders
    return folder


def soak(
    work: Path,
    duration_s: float,
    clients: int,
    klue: str | None,
    kcbert: str,
    kornli: str | None = None,
    warmup_s: float | None = None,
) -> dict:
    """Serve the demo model from `work` and load it; `klue` and `kornli` are KLUE-NLI and
    KorNLI mirrors (None: the official downloads), `kcbert` the tokenizer (a Hub id or an
    absolute folder). RSS growth counts from `warmup_s` (default: a fifth of the run, at
    least 10 s)."""
    from benchmarks.run import bench_params, store_in_bentoml
    from benchmarks.serving import load, warm
    from stages.download import download

    params = bench_params(klue, kcbert, kornli)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        download(params)
        model_dir = save_demo_model(params, work / "demo-model")
    finally:
        os.chdir(cwd)
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"), "PYTHONPATH": str(ROOT)}
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
    store_in_bentoml(model_dir, "soak")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = bentoml_server(ROOT, port, work / "soak-server.log", env)
    try:
        server.wait_ready(timeout=180)
        warm(base)
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        figures = load(base + "/api", clients, duration=duration_s)
        sampler.stopped.set()
        sampler.join()
        alive = server.alive()
    finally:
        server.stop()
    warmup_s = warmup_s if warmup_s is not None else max(10.0, duration_s / 5)
    rss_warm, rss_end, growth = rss_growth(sampler.samples, warmup_s)
    return {
        **run_stamp(),
        "clients": clients,
        "duration_s": duration_s,
        "requests": figures["requests"],
        "errors": figures["errors"],
        "rps": figures["rps"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "warmup_s": warmup_s,
        "rss_after_warmup_mb": rss_warm / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_growth": growth,
        "server_alive": alive,
    }


def main() -> None:
    apply_quiet_defaults()
    # the stand-ins as absolute paths: the benchmark's projects are other folders
    klue = local_source(os.environ.get("KLUE_NLI_MIRROR") or "") or None
    kornli = local_source(os.environ.get("KORNLI_MIRROR") or "") or None
    kcbert = os.environ.get("KCBERT_DIR") or "beomi/kcbert-base"
    # absolute: the soak runs in a scratch folder
    klue = str(Path(klue).resolve()) if klue and Path(klue).exists() else klue
    kornli = str(Path(kornli).resolve()) if kornli and Path(kornli).exists() else kornli
    kcbert = str(Path(kcbert).resolve()) if Path(kcbert).exists() else kcbert
    duration = float(os.environ.get("SOAK_DURATION", "300"))
    clients = int(os.environ.get("SOAK_CLIENTS", "16"))
    work = Path(tempfile.mkdtemp(prefix="klue-soak-"))
    try:
        result = soak(work, duration, clients, klue, kcbert, kornli)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic_write_json(HERE / "soak.json", result)
    print(json.dumps(result, indent=2))
    if result["errors"] or result["rss_growth"] >= 0.10 or not result["server_alive"]:
        sys.exit("soak: FAILED (errors, RSS growth >= 10 % or the server died); see soak.json")


if __name__ == "__main__":
    main()
