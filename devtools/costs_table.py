"""docs/start.md's table of what the long targets cost, rendered from the files their runs
wrote (the recipe records, benchmarks/results.json and soak.json), each with its run's date,
commit where it recorded one, and CPU. `make figures` rewrites the block between the markers;
tests/unit/test_docs.py fails when the page and the files disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devtools.refs import repo_ref
from klue_nli.core.io import atomic_write_text

PAGE = "docs/start.md"
START, END = "<!-- costs:start -->\n", "<!-- costs:end -->"
# (target, file, what its time covers); a file that is missing leaves its row out
SOURCES = (
    ("make demo", "metrics/recipes/demo.json", "`dvc exp run`: download to evaluate"),
    ("make run-e5", "metrics/recipes/e5-full.json", "`dvc exp run`: download to evaluate"),
    ("make bench", "benchmarks/results.json", "every section of the benchmark"),
    ("make soak", "benchmarks/soak.json", "the load and its warm-up"),
    ("make container", "benchmarks/container.json", "Bento, base image, image, the checks"),
)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:,.0f} s)"


def _cpu(record: dict[str, Any]) -> str:
    cpu = record.get("cpu")
    if isinstance(cpu, str):
        return f"{record.get('cpus', '?')} {cpu} cores"
    if isinstance(cpu, dict):
        return f"{record.get('cores', '?')} {cpu['model']} cores"
    machine = record.get("machine") or {}
    model = (machine.get("cpu") or {}).get("model", "unknown CPU")
    return f"{machine.get('cores', record.get('cores', '?'))} {model} cores"


def _row(target: str, record: dict[str, Any], covers: str, link: str) -> str:
    if "wall_s" in record:
        seconds = record["wall_s"]
    elif "seconds" in record:
        seconds = record["seconds"]
    else:
        seconds = record["duration_s"] + record.get("warmup_s", 0.0)
    run = str(record.get("date", "undated"))[:10]
    if record.get("commit"):
        run += f", commit {record['commit']}"
    cpu = _cpu(record) if ("cpu" in record or "machine" in record) else f"{record['cores']} cores"
    peak = f"{record['peak_rss_mb'] / 1024:.1f} GB" if "peak_rss_mb" in record else "not recorded"
    return f"| `{target}` | {_minutes(seconds)} | {peak} | {covers} | {run}, {cpu} | {link} |\n"


def render(root: Path, prefix: str) -> str:
    """The table, naming each file as a page `prefix` below the project names it."""
    rows = []
    for target, name, covers in SOURCES:
        path = root / name
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            rows.append(_row(target, record, covers, repo_ref(name, prefix)))
    header = (
        "| target | time | peak memory (one process) | what the time covers | run | file |\n"
        "|---|---|---|---|---|---|\n"
    )
    return header + "".join(rows)


def page_block(root: Path) -> str:
    return render(root, "../" * (len(Path(PAGE).parts) - 1))


def write_pages(root: Path = Path()) -> list[str]:
    text = (root / PAGE).read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(root / PAGE, head + START + page_block(root) + END + tail)
    return [PAGE]
