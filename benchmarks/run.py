"""`make bench`: the project against the original tutorial's approach, on the KLUE sample
and the small demo model, each ratio measured in the same run on the same machine.

Writes benchmarks/results.json, results.md and results.png. Inputs as for the tests:
KLUE_NLI_MIRROR and KCBERT_DIR (else the official download and the Hub). Each load phase lasts
BENCH_DURATION seconds (default 20, at most 60), against 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks import base
from benchmarks.loadgen import PAIRS
from devtools.sandbox import Server, free_port, make_project, project_env, run_module
from klue_nli.core.cli import apply_quiet_defaults
from klue_nli.core.io import atomic_write_json, atomic_write_text
from klue_nli.core.manifest import write_manifest
from klue_nli.core.params import Params, params_from_dict, params_to_dict
from klue_nli.data.encoding import load_tokenizer
from klue_nli.data.klue import read_split
from klue_nli.inference.bento import store_model
from klue_nli.inference.predictor import Predictor
from klue_nli.model.modeling import build_model
from stages.download import download
from stages.featurize import featurize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DURATION = min(float(os.environ.get("BENCH_DURATION", "20")), 60.0)
CONCURRENCY = (1, 8, 32)
SUMMARY_KEYS = ("rps", "p99_ms", "errors", "ratio_vs_flask", "fraction_of_ceiling")


def bench_params(klue: str, kcbert: str) -> Params:
    raw = params_to_dict(Params())
    raw["data"]["mirror"] = klue
    raw["model"].update({"name_or_path": kcbert, "init": "random"})
    return params_from_dict(raw)


def original_featurize(params: Params) -> int:
    """ratsnlp style: the pure-Python BertTokenizer, one pair at a time, padded to 64."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its per-pair truncation warning would slow it unfairly

    vocab = Path(params.model.name_or_path) / "vocab.txt"
    if not vocab.exists():
        from huggingface_hub import hf_hub_download

        vocab = Path(hf_hub_download(params.model.name_or_path, "vocab.txt"))
    tokenizer = BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=False)
    features = []
    for split in ("train", "dev"):
        for e in read_split(params.paths.raw_dir, split):
            enc = tokenizer(
                e.premise, e.hypothesis, max_length=64, padding="max_length", truncation=True
            )
            features.append({**enc, "label": params.labels.index(e.label)})
    return len(features)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bench_train(params: Params, steps: int = 120) -> dict:
    """The demo model: padded to 64 (the original) against dynamic and length-grouped."""
    return base.train_throughput(params, steps=steps, warmup=10, base_size=False)


def save_demo_model(params: Params, folder: Path) -> Path:
    tokenizer = load_tokenizer(params.model.name_or_path, do_lower_case=False)
    tokenizer.model_max_length = params.featurize.max_seq_length
    model = build_model(params.model, params.labels, tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_manifest(folder)  # the service serves only verifiable model folders
    return folder


def store_in_bentoml(model_dir: Path, label: str) -> None:
    """Put a model folder in the BentoML store as the service's model (what `make export`
    does for the champion), labelled as registry version `label`."""
    store_model(model_dir, {"registry_version": label})


def ceiling(model_dir: Path, params: Params, batch: int = 32, seconds: float = 5) -> float:
    """The model's own batched forward throughput, in-process (pairs/s), with every core, on
    the pairs the load generator sends (their length sets the cost), in the configuration the
    service runs (its quantization)."""
    predictor = Predictor.from_dir(
        model_dir, quantize=params.serve.quantize, runtime=params.serve.runtime
    )
    pairs = [PAIRS[i % len(PAIRS)] for i in range(batch)]
    premises, hypotheses = [p for p, _ in pairs], [h for _, h in pairs]
    predictor.predict_proba(premises, hypotheses, batch)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict_proba(premises, hypotheses, batch)
        done += len(premises)
    return done / (time.perf_counter() - start)


def load(url: str, concurrency: int, duration: float = DURATION, rate: float = 0) -> dict:
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
    import requests

    for _ in range(20):
        requests.post(url, json={"premise": "워밍업", "hypothesis": "준비"}, timeout=30)


def bench_serve(params: Params, work: Path, model_dir: Path, open_loop: bool = False) -> dict:
    """The Flask app (the tutorial's way) against the service as shipped, closed loop at 1, 8
    and 32 clients; with `open_loop`, the service also at 50 % and 150 % of its measured
    capacity, then a check that it answers normally right after the overload."""
    results: dict = {"ceiling_pairs_per_s": ceiling(model_dir, params)}
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"), "PYTHONPATH": str(ROOT)}
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]

    store_in_bentoml(model_dir, model_dir.name)  # the newest version: what the service loads
    flask_port, bento_port = free_port(), free_port()
    phases = {
        "flask": (
            ["benchmarks.flask_app", "--model-dir", str(model_dir), "--port", str(flask_port)],
            f"http://127.0.0.1:{flask_port}",
            "/health",
        ),
        "bentoml": (
            [
                "bentoml",
                "serve",
                "service.service:NLIService",
                "--host",
                "127.0.0.1",
                "--port",
                str(bento_port),
            ],
            f"http://127.0.0.1:{bento_port}",
            "/readyz",
        ),
    }
    for name, (args, url, health) in phases.items():
        server = Server(
            [sys.executable, "-m", *args], url + health, work / f"{name}.log", ROOT, env
        )
        try:
            server.wait_ready(timeout=180)
            warm(url + "/api")
            results[name] = {f"c{c}": load(url + "/api", c) for c in CONCURRENCY}
            if open_loop and name == "bentoml":
                capacity = results[name]["c32"]["rps"]
                results["open50"] = load(url + "/api", 0, rate=0.5 * capacity)
                results["overload"] = load(url + "/api", 0, rate=1.5 * capacity)
                results["after_overload"] = load(url + "/api", 1, duration=5)
                # "one batch": a full batch on one worker at the measured per-worker rate
                batch_ms = 1000 * params.serve.max_batch_size * params.serve.workers / capacity
                bound = params.serve.max_latency_ms + batch_ms
                results["overload"]["bound_ms"] = bound
                results["overload"]["p99_within_bound"] = (
                    results["overload"]["p99_ms"] is not None
                    and results["overload"]["p99_ms"] <= bound
                )
        finally:
            server.stop()
    for c in CONCURRENCY:
        b, f = results["bentoml"][f"c{c}"], results["flask"][f"c{c}"]
        b["ratio_vs_flask"] = b["rps"] / f["rps"]
        b["fraction_of_ceiling"] = b["rps"] / results["ceiling_pairs_per_s"]
    return results


def bench_base(params: Params, work: Path) -> dict:
    """kcbert-base's shape, random weights: training, in-process inference, agreement."""
    model_dir = base.save_base_model(params, work / "base-model")
    return {
        "train": base.train_throughput(params),
        "inference": base.inference(model_dir, params),
        "quantized": base.agreement(model_dir, params),
        "serve": bench_serve(params, work, model_dir, open_loop=True),
    }


def demo_agreement(project: Path, params: Params) -> dict | None:
    """Each CPU speed-up vs fp32 on the trained demo model (`make demo` leaves it in
    models/best)."""
    model_dir = project / Params().paths.model_dir
    if not (model_dir / "config.json").exists():
        print(f"no trained model in {model_dir}: run `make demo` first for demo.quantized")
        return None
    return base.agreement(model_dir, params)


def bench_pipeline(klue: str, kcbert: str, work: Path) -> dict:
    env = project_env(
        KLUE_NLI_MIRROR=klue,
        KCBERT_DIR=kcbert,
        PREFECT_HOME=str(work / "ph"),
        BENTOML_HOME=str(work / "bentoml-pipe"),
    )
    env.pop("PREFECT_API_URL", None)
    project = make_project(ROOT, work / "project", env)
    fast = ["-S", "train.max_steps=20"]
    recipe = run_module(project, env, "flows.recipes", "quick").split()
    run_module(project, env, "dvc", "exp", "run", *recipe, *fast)
    run_module(project, env, "dvc", "repro")  # warm the OS caches first
    noop_repro, _ = timed(run_module, project, env, "dvc", "repro")
    noop_flow, _ = timed(run_module, project, env, "flows.training", "--no-bento")
    return {"noop_repro_s": noop_repro, "noop_flow_s": noop_flow}


def markdown(r: dict) -> str:
    f, t, s = r["featurize"], r["train"], r["serve"]
    rows = [
        "| benchmark | original | this project | ratio | target |",
        "|---|---|---|---|---|",
        f"| featurize (pairs/s, {f['pairs']} pairs) | {f['original_pairs_per_s']:.0f} "
        f"| {f['stage_pairs_per_s']:.0f} | {f['ratio']:.1f}x | >= 10x |",
        f"| train (examples/s, {t['steps']} steps) | {t['fixed']['examples_per_s']:.0f} "
        f"| {max(t['dynamic']['examples_per_s'], t['grouped']['examples_per_s']):.0f} "
        f"| {t['ratio']:.2f}x | >= 1.5x |",
    ]
    rows += serve_rows(s, "serve", "{:.0f}", ">= 5x, p99 <= 100 ms, 0 errors")
    rows += [
        f"| serve ceiling, in-process batched forward (pairs/s) | | "
        f"{s['ceiling_pairs_per_s']:.0f} | 32 clients reach "
        f"{s['bentoml']['c32']['fraction_of_ceiling']:.0%} | >= 80 % |",
        f"| no-op `dvc repro` (s) | | {r['pipeline']['noop_repro_s']:.2f} | | |",
        f"| no-op Prefect flow run, ephemeral API (s) | | {r['pipeline']['noop_flow_s']:.1f} | | |",
    ]
    rows += base_rows(r)
    m = r["machine"]
    return (
        f"Measured {r['date']} on {m['cores']} cores ({m['processor']}), torch threads "
        f"{m['torch_threads']}, load phases of {DURATION:.0f} s.\n\n" + "\n".join(rows) + "\n"
    )


def serve_rows(s: dict, label: str, rate: str, target: str) -> list[str]:
    """Flask vs the service at each concurrency: req/s (in `rate` format), p50/p99, errors."""
    rows = []
    for c in CONCURRENCY:
        cells = []
        for run in (s["flask"][f"c{c}"], s["bentoml"][f"c{c}"]):
            cells.append(
                f"{rate.format(run['rps'])}; {run['p50_ms']:.0f}/{run['p99_ms']:.0f}; "
                f"{run['errors']}"
            )
        ratio = s["bentoml"][f"c{c}"]["ratio_vs_flask"]
        rows.append(
            f"| {label}, {c} clients (req/s; p50/p99 ms; errors) | {cells[0]} | {cells[1]} "
            f"| {ratio:.2f}x | {target if c == 32 else ''} |"
        )
    return rows


def base_rows(r: dict) -> list[str]:
    b = r["base"]
    t, inf, q, s = b["train"], b["inference"], b["quantized"], b["serve"]
    demo = r["demo"]["quantized"]
    rows = [
        "| **kcbert-base shape (12 x 768), random weights** | | | | |",
        f"| base train (examples/s, {t['steps']} steps; padded 64 / dynamic / grouped) "
        f"| {t['fixed']['examples_per_s']:.2f} | {t['dynamic']['examples_per_s']:.2f} / "
        f"{t['grouped']['examples_per_s']:.2f} | {t['ratio']:.2f}x | >= 1.6x |",
        f"| base inference in process (pairs/s; tutorial batch 1 padded fp32 / batch 32: "
        f"torch fp32, torch int8, ORT fp32, ORT int8) | {inf['tutorial_batch1_padded_fp32']:.1f} "
        f"| {inf['batch32_dynamic_fp32']:.1f} / {inf['batch32_dynamic_int8']:.1f} / "
        f"{inf['batch32_dynamic_onnxruntime']:.1f} / {inf['batch32_dynamic_onnxruntime_int8']:.1f}"
        f" | {inf['ratio_fp32']:.1f}x / {inf['ratio_int8']:.1f}x / "
        f"{inf['ratio_onnxruntime']:.1f}x / {inf['ratio_onnxruntime_int8']:.1f}x | |",
    ]
    for label, agree, target in (
        ("base, random weights", q, ""),
        ("trained demo model", demo, ">= 99 %"),
    ):
        if not agree:
            continue
        for name, a in (
            ("torch int8", agree),
            ("ORT fp32", agree["onnxruntime"]),
            ("ORT int8", agree["onnxruntime_int8"]),
        ):
            rows.append(
                f"| {name} vs torch fp32 ({label}; dev sample): argmax agreement; max prob "
                f"diff; alone vs batched | | {a['argmax_agreement']:.1%}; "
                f"{a['max_abs_prob_diff']:.1e}; {a['max_abs_prob_diff_alone_vs_batched']:.1e} "
                f"| accuracy {a['accuracy_diff']:+.1%} | {target} |"
            )
    rows += serve_rows(s, "base serve", "{:.1f}", ">= 6x, 0 errors")
    o50, over, after = s["open50"], s["overload"], s["after_overload"]
    rows += [
        f"| base serve ceiling, in-process (pairs/s) | | {s['ceiling_pairs_per_s']:.1f} | "
        f"32 clients reach {s['bentoml']['c32']['fraction_of_ceiling']:.0%} | >= 90 % |",
        f"| base open loop at 50 % ({o50['rate']:.1f} req/s: p50/p99 ms; 503; other errors) "
        f"| | {o50['p50_ms']:.0f}/{o50['p99_ms']:.0f}; {o50['shed_503']}; "
        f"{o50['other_errors']} | | 0 errors |",
        f"| base open loop at 150 % ({over['rate']:.1f} req/s: answered p99 ms; 503; other "
        f"errors) | | {over['p99_ms'] or 0:.0f}; {over['shed_503']}; {over['other_errors']} "
        f"| | 503 only, p99 <= {over['bound_ms']:.0f} ms (max_latency_ms + a batch) |",
        f"| right after the overload, 1 client (req/s; errors) | | {after['rps']:.1f}; "
        f"{after['errors']} | | 0 errors |",
    ]
    return rows


def plot(r: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    for name, style in (("flask", "o--"), ("bentoml", "o-")):
        ax1.plot(
            CONCURRENCY, [r["serve"][name][f"c{c}"]["rps"] for c in CONCURRENCY], style, label=name
        )
    ax1.axhline(r["serve"]["ceiling_pairs_per_s"], color="grey", ls=":", label="ceiling")
    ax1.set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title="Serving")
    ax1.legend()
    names = ["featurize", "train"]
    ax2.bar(names, [r["featurize"]["ratio"], r["train"]["ratio"]], color=["#1a7f37", "#0969da"])
    ax2.axhline(1, color="grey", lw=0.8)
    ax2.set(ylabel="speed-up vs original (x)", title="Same-run ratios")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    apply_quiet_defaults()
    klue = os.environ.get("KLUE_NLI_MIRROR") or None
    kcbert = os.environ.get("KCBERT_DIR") or "beomi/kcbert-base"
    if Path(kcbert).exists():  # a folder: absolute, since the benchmark runs elsewhere
        kcbert = str(Path(kcbert).resolve())
    work = Path(tempfile.mkdtemp(prefix="klue-bench-"))
    cwd = os.getcwd()
    try:
        os.chdir(work)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        params = bench_params(str(Path(cwd, klue).resolve()) if klue else None, kcbert)
        download(params)
        featurize(params)  # the sample's features, for the training probes
        results = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cores": os.cpu_count(),
                "processor": platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
            },
            "featurize": base.featurize_at_scale(params, work, original_featurize, featurize),
            "train": bench_train(params),
            "serve": bench_serve(params, work, save_demo_model(params, work / "demo-model")),
            "pipeline": bench_pipeline(params.data.mirror or "", kcbert, work),
            "base": bench_base(params, work),
            "demo": {"quantized": demo_agreement(Path(cwd), params)},
        }
    finally:
        os.chdir(cwd)
    for serve in (results["serve"], results["base"]["serve"]):
        c32 = serve["bentoml"]["c32"]
        serve["c32"] = {k: c32[k] for k in SUMMARY_KEYS}
    atomic_write_json(HERE / "results.json", results)
    atomic_write_text(HERE / "results.md", markdown(results))
    plot(results, HERE / "results.png")
    print(markdown(results))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
