"""Performance blocks of the pages, rendered from the files the benchmarks wrote: the targets
of `make bench` and `make recovery` (benchmarks/results.json, recovery.json) in the README and
docs/performance.md, and docs/performance.md's ways of training from `make train-speed`
(benchmarks/train_speed.json), each with the machine and date of its run, as the run
recorded them.

`make figures` (devtools/figures.py) rewrites the blocks between the markers;
tests/unit/test_docs.py fails when a page and its file disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devtools.refs import repo_ref

PAGE = "README.md"
RESULTS = Path("benchmarks/results.json")
RECOVERY = Path("benchmarks/recovery.json")
START, END = "<!-- bench:start -->\n", "<!-- bench:end -->"
SPEED_PAGE = "docs/performance.md"
TRAIN_SPEED = Path("benchmarks/train_speed.json")
SPEED_START, SPEED_END = "<!-- train-speed:start -->\n", "<!-- train-speed:end -->"
RELIABILITY_PAGE = "docs/reliability.md"
SOAK = Path("benchmarks/soak.json")
RECOVERY_MARKS = ("<!-- recovery:start -->\n", "<!-- recovery:end -->")
SOAK_MARKS = ("<!-- soak:start -->\n", "<!-- soak:end -->")
SERVING_PAGE = "docs/serving.md"
CONTAINER = Path("benchmarks/container.json")
CONTAINER_MARKS = ("<!-- container:start -->\n", "<!-- container:end -->")
# the bench's plot, where the site can show it (pages link nothing outside docs/)
PLOT, PLOT_COPY = Path("benchmarks/results.png"), Path("docs/img/bench.png")


def _figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _when(record: dict[str, Any]) -> str:
    """The run's date and commit as its file gives them ("undated" where it gives none)."""
    if not record.get("date"):
        return "undated, commit not recorded"
    return f"{str(record['date'])[:10]}, commit {record.get('commit') or 'not recorded'}"


def _machine(results: dict[str, Any]) -> str:
    m = results["machine"]
    cpu = m.get("cpu") or m.get("processor") or "unknown CPU"
    if isinstance(cpu, dict):  # the model and the flags the variants depend on
        cpu = f"{cpu['model']}; {', '.join(cpu['flags']) or 'no notable flags'}"
    gpu = m.get("gpu") or "no GPU"
    return f"{m['cores']} cores ({cpu}), {gpu}"


def _sample(results: dict[str, Any], target: str) -> str:
    """The pairs an agreement figure is counted on (the section's variants' dev pairs)."""
    if "agreement" not in target and "keeping the answers" not in target:
        return ""
    section = target.split(":")[0].split(" ")[0]
    pairs = results.get(section, {}).get("variants", {}).get("dev_pairs")
    return f" ({pairs:,} dev pairs)" if pairs else " (pairs not recorded)"


def render(results: dict[str, Any], recovery: dict[str, Any] | None, up: str = "") -> str:
    """The block: the run's conditions, one row per target, the recovery figure. `up`: the
    path from the page's folder to the project's ("../" for docs/)."""
    day = str(results["date"])[:10]
    commit = f"commit {results['commit']}" if results.get("commit") else "commit not recorded"
    lines = [
        f"`make bench` on {_machine(results)}, {day}, {commit}, "
        f"{results['seconds'] / 60:.0f} minutes "
        f"(every figure in {repo_ref('benchmarks/results.md', up)}):\n",
        "\n",
        "| target | figure | wanted | met |\n",
        "|---|---|---|---|\n",
    ]
    for t in results["targets"]:
        met = "yes" if t["met"] else "**no**"
        figure = _figure(t["figure"]) + _sample(results, t["target"])
        lines.append(f"| {t['target']} | {figure} | {t['wanted']} | {met} |\n")
    stored = [r for r in (recovery or {}).get("runs", []) if r["graph"] == "stored by make export"]
    if stored:
        lines.append(
            f"\nA killed worker answers again after {stored[0]['recovery_s']:.1f} s "
            f"(`make recovery`, {_when(recovery)}, "
            f"{repo_ref('benchmarks/recovery.json', up)}).\n"
        )
    return "".join(lines)


def load(root: Path = Path()) -> tuple[dict[str, Any], dict[str, Any] | None]:
    results = json.loads((root / RESULTS).read_text(encoding="utf-8"))
    recovery_file = root / RECOVERY
    recovery = json.loads(recovery_file.read_text()) if recovery_file.is_file() else None
    return results, recovery


def render_train_speed(speed: dict[str, Any]) -> str:
    """The ways of training side by side, as `make train-speed` measured them."""
    cpu = speed["cpu"] if isinstance(speed["cpu"], dict) else {"model": speed["cpu"]}
    flags = ", ".join(cpu.get("flags", [])) or "flags not recorded"
    if "date" not in speed:
        raise SystemExit(f"{TRAIN_SPEED}: no date or commit (an older run): rerun make train-speed")
    when = f"{speed['date']}, commit `{speed['commit']}`"
    lines = [
        f"`make train-speed` ({when}) on {speed['cores']} cores ({cpu['model']}; {flags}), "
        f"{speed['precision']}, {speed['examples_each']:,} training examples each, "
        f"{speed['val_records']:,} validation pairs "
        "(`benchmarks/train_speed.json`):\n",
        "\n",
        "| way | examples/s | against the demo's | validation accuracy | "
        "difference (± 1 s.e.) | adopted |\n",
        "|---|---|---|---|---|---|\n",
    ]
    for name, v in speed["variants"].items():
        lines.append(
            f"| {name} | {v['examples_per_s']:.1f} | {v['speed_ratio']:.2f}x | "
            f"{100 * v['val_acc']:.1f} % | {100 * v['val_acc_diff']:+.1f} ± "
            f"{100 * v['diff_standard_error']:.1f} | {'yes' if v['adopt'] else 'no'} |\n"
        )
    return "".join(lines)


def load_train_speed(root: Path = Path()) -> dict[str, Any]:
    return json.loads((root / TRAIN_SPEED).read_text(encoding="utf-8"))


def render_recovery(recovery: dict[str, Any]) -> str:
    """`make recovery`: each way a worker starts, killed under load."""
    model = recovery.get("model", {})
    lines = [
        f"`make recovery` on {recovery['cpus']} CPUs, {_when(recovery)}, model version "
        f"{model.get('registry_version', '?')} (graph {model.get('graph', 'none')}), "
        f"{recovery['runs'][0]['clients']} closed-loop clients "
        "(`benchmarks/recovery.json`):\n",
        "\n",
        "| the worker's start | first start, ready | answering again after the kill | lost "
        "| sent during the restart, answered |\n",
        "|---|---|---|---|---|\n",
    ]
    for run in recovery["runs"]:
        lines.append(
            f"| graph {run['graph']} | {run['first_start_ready_s']:.1f} s "
            f"| {run['recovery_s']:.1f} s | {run['lost']} "
            f"| {run['answered_after_kill']} of {run['sent_after_kill']} |\n"
        )
    return "".join(lines)


def render_soak(soak: dict[str, Any]) -> str:
    """`make soak`: requests, errors, latency and memory growth of its last run."""
    cpu = f" {soak['cpu']['model']}" if "cpu" in soak else ""
    return (
        f"`make soak` on {soak['cores']}{cpu} cores, {_when(soak)}, "
        f"{soak['clients']} clients for {soak['duration_s']:.0f} s "
        "(`benchmarks/soak.json`): "
        f"**{soak['requests']:,} requests, {soak['errors']} errors**, {soak['rps']:.0f} "
        f"requests/s, p50 {soak['p50_ms']:.0f} ms, p99 {soak['p99_ms']:.0f} ms; resident "
        f"memory of the server's process tree {soak['rss_after_warmup_mb']:,.0f} MB after the "
        f"{soak['warmup_s']:.0f} s warm-up and {soak['rss_end_mb']:,.0f} MB at the end: "
        f"**RSS growth {100 * soak['rss_growth']:.2f} %**.\n"
    )


def render_container(run: dict[str, Any]) -> str:
    """`make container`: its time, the image's size and base, the checks of its last run."""
    cpu = run["cpu"]["model"] if isinstance(run["cpu"], dict) else run["cpu"]
    base = run["base_image"] + (
        " (built from Debian's packages: the bentofile's could not be pulled)"
        if run["base_built_from_debian"]
        else ""
    )
    return (
        f"`make container` on {run['cores']} {cpu} cores, {str(run['date'])[:10]}, commit "
        f"{run['commit']} (`benchmarks/container.json`): **{run['wall_s'] / 60:.1f} min** in "
        f"all ({run['build_s']:.0f} s of it `bentoml containerize`), image "
        f"**{run['image_bytes'] / 1e9:.2f} GB** on {base}; `/readyz` answered 200 "
        f"{run['ready_s']:.1f} s after `podman run`, `/api` answered {run['api_prediction']} "
        f"with the tutorial's fields from model version {run['model_version']}, `/feedback` "
        f"{run['feedback_status']}.\n"
    )


def load_json(path: Path, root: Path = Path()) -> dict[str, Any]:
    return json.loads((root / path).read_text(encoding="utf-8"))


def render_page(text: str, block: str, start: str = START, end: str = END) -> str:
    """`text` with the block between the markers replaced."""
    if start not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + block + end + tail


def write_pages(root: Path = Path()) -> list[Path]:
    """Rewrite the blocks from their files (`make figures`); the pages written."""
    from klue_nli.core.io import atomic_write_bytes, atomic_write_text

    pages, bench = [], load(root)
    for page, block, start, end in (
        (PAGE, render(*bench), START, END),
        (SPEED_PAGE, render(*bench, up="../"), START, END),
        (SPEED_PAGE, render_train_speed(load_train_speed(root)), SPEED_START, SPEED_END),
        (RELIABILITY_PAGE, render_recovery(load_json(RECOVERY, root)), *RECOVERY_MARKS),
        (RELIABILITY_PAGE, render_soak(load_json(SOAK, root)), *SOAK_MARKS),
        (SERVING_PAGE, render_container(load_json(CONTAINER, root)), *CONTAINER_MARKS),
    ):
        path = root / page
        atomic_write_text(path, render_page(path.read_text(encoding="utf-8"), block, start, end))
        pages.append(path)
    atomic_write_bytes(root / PLOT_COPY, (root / PLOT).read_bytes())
    pages.append(root / PLOT_COPY)
    return pages
