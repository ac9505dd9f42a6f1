"""`make stack`: what the service's per-request work around the model costs, one piece at a
time. The HTTP server's event loop and parser (uvloop and httptools, in C, against asyncio
and h11 in Python), BentoML's access log and its trace spans on the JSON routes all run on
the event loop, and the model's next batch waits for it.

Four copies of the service, up together on the same stored model, each adding one change to
the one before: asyncio + h11 with the access log and traces (the service before these
changes), uvloop + httptools, no access log, no traces on the JSON routes (the service as
shipped). 32 closed-loop clients against each in interleaved rounds, for kcbert-base's shape
(random weights, as `make bench`) and for the demo model (models/best, when `make demo` has
run). Inputs as for `make bench`: KLUE_NLI_MIRROR and KCBERT_DIR. Writes
benchmarks/stack.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import base, serving
from benchmarks.run import bench_params, ceiling, committed, store_in_bentoml
from devtools.sandbox import Server
from klue_nli.core.cpus import cpu_description
from klue_nli.core.env import local_source
from klue_nli.core.io import atomic_write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = 3
SECONDS = 8.0
# name: (uvicorn may take uvloop and httptools, BentoML settings over the service's defaults)
ON = {"logging": {"access": {"enabled": True}}, "tracing": {"excluded_urls": []}}
CONFIGS = {
    "asyncio + h11, access log, traces": (False, ON),
    "uvloop + httptools, access log, traces": (True, ON),
    "... no access log": (True, {"tracing": {"excluded_urls": []}}),
    "... no traces on the JSON routes (shipped)": (True, {}),
}
BASELINE = next(iter(CONFIGS))


def hide_c_modules(folder: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes `import uvloop` and `import httptools` fail,
    as where they are not installed: uvicorn then runs asyncio's loop and h11."""
    for name in ("uvloop", "httptools"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f'raise ImportError("{name} hidden")\n')
    return folder


def start(c_modules: bool, settings: dict, work: Path) -> tuple[Server, str]:
    """One copy of the service, ready and warmed up, with its own BentoML settings."""
    env = {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"klue-nli": settings}})}
    if not c_modules:
        env["PYTHONPATH"] = os.pathsep.join([str(hide_c_modules(work / "no-c")), str(ROOT)])
    return serving.start("bentoml", ROOT, work, env=env)


def measure(model_dir: Path, work: Path) -> dict:
    """Every configuration up at once on `model_dir`, c32 rounds interleaved; per
    configuration the bench's phase summary, the share of the in-process ceiling and the
    req/s against the first configuration's in the same round."""
    params = committed()
    store_in_bentoml(model_dir, model_dir.name)
    servers: dict[str, tuple[Server, str]] = {}
    try:
        for name, (c_modules, settings) in CONFIGS.items():
            servers[name] = start(c_modules, settings, work)
        top = ceiling(model_dir, params)
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        for _ in range(ROUNDS):
            for name, (server, url) in servers.items():
                runs[name].append(
                    serving.phase(url, server.proc.pid, True, concurrency=32, duration=SECONDS)
                )
    finally:
        for server, _ in servers.values():
            server.stop()
    out: dict = {"ceiling_pairs_per_s": top, "configs": {}}
    for name, phases in runs.items():
        summary = serving.summarise(phases)
        summary["fraction_of_ceiling"] = serving.spread([p["rps"] / top for p in phases])
        summary["ratio_vs_first"] = serving.spread(
            [p["rps"] / b["rps"] for p, b in zip(phases, runs[BASELINE], strict=True)]
        )
        out["configs"][name] = summary
    return out


def main() -> None:
    kcbert = os.environ.get("KCBERT_DIR", "beomi/kcbert-base")
    params = bench_params(local_source(os.environ.get("KLUE_NLI_MIRROR") or "") or None, kcbert)
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_description(),
        "rounds": ROUNDS,
        "seconds_per_phase": SECONDS,
        "models": {},
    }
    demo_model = ROOT / committed().paths.model_dir
    with tempfile.TemporaryDirectory(prefix="klue-nli-stack-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        models = {"base": base.save_base_model(params, work / "base-model")}
        if (demo_model / "config.json").exists():
            models["e5"] = demo_model
        else:
            print(f"no trained model in {demo_model}: `make demo` first for the e5 rows")
        for key, model_dir in models.items():
            results["models"][key] = measure(model_dir, work)
            for name, s in results["models"][key]["configs"].items():
                print(
                    f"{key:4} {name:44} {s['rps']['median']:6.1f} req/s "
                    f"({s['ratio_vs_first']['median']:.2f}x), share of ceiling "
                    f"{s['fraction_of_ceiling']['median']:.3f}, rest of app "
                    f"{s['app_other_ms']['median']:.1f} ms"
                )
    atomic_write_json(HERE / "stack.json", results)


if __name__ == "__main__":
    main()
