"""A recipe run's record: what `klue-nli recipe NAME --run` measured, in one JSON file per
recipe (paths.recipe_records/NAME.json), written by the run itself. The README and
docs/model.md quote their figures from these files; tests/unit/test_docs.py holds them to it.

Only metrics files the run wrote count: files older than its start (a previous run's) leave
no record, so a failed or skipped stage never passes for a result.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from klue_nli.core.cpus import cpu_description, usable_cpus
from klue_nli.core.io import atomic_write_json, atomic_write_text
from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.model.behaviour import HARD

TRAIN_KEYS = (
    "best_val_acc",
    "val_records",
    "epochs",
    "steps",
    "train_seconds",
    "train_examples_per_s",
    "precision",
    "effective_batch_size",
)
EVAL_KEYS = (
    "n",
    "accuracy",
    "macro_f1",
    "per_class",
    "by_source",
    "baselines",
    "out_of_domain",
    "behaviour",
    "served",
)


def _fresh_json(path: Path, since: float) -> dict[str, Any] | None:
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def write_record(
    name: str,
    started: float,
    wall_s: float,
    params_file: str | Path = PARAMS_FILE,
    covers: str = "dvc exp run: download to evaluate",
) -> Path | None:
    """Write paths.recipe_records/NAME.json from the metrics this run wrote (started: its
    start, as time.time()); None, and nothing written, when it wrote none."""
    paths = load_params(params_file).paths
    train = _fresh_json(Path(paths.train_live) / "metrics.json", started)
    report = _fresh_json(Path(paths.eval_metrics), started)
    if train is None or report is None:
        return None
    cpu = cpu_description()
    record = {
        "recipe": name,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "commit": _commit(),  # the recipe's overrides are in recipes/NAME.yaml at it
        "cpus": usable_cpus(),
        "cpu": cpu["model"],
        "cpu_flags": cpu["flags"],
        "gpu": _gpu(),
        "wall_s": round(wall_s, 1),
        "wall_covers": covers,
        "train": {key: train[key] for key in TRAIN_KEYS if key in train},
        "eval": {key: report[key] for key in EVAL_KEYS if key in report},
    }
    dest = Path(paths.recipe_records) / f"{name}.json"
    atomic_write_json(dest, record)
    return dest


def _gpu() -> str | None:
    """The GPU training could use (its name), None on a CPU-only machine."""
    import torch  # here only: the record names the hardware its figures hold on

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


# Pages that show the records, between these markers; `make figures` rewrites the blocks
# (tests/unit/test_docs.py fails when a block and the records disagree).
PAGES = ("README.md", "docs/model.md")
START, END = "<!-- recipes:start -->\n", "<!-- recipes:end -->"
SHOWN = ("demo", "e5-full")  # the columns, in this order, where a record exists
BASIC = ("identity", "negation", "word_order", "negation_raises_contradiction")


def load_records(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The records of SHOWN found in `folder` (paths.recipe_records), by recipe name."""
    found = {}
    for name in SHOWN:
        path = Path(folder) / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _schedule(t: dict[str, Any]) -> str:
    """`5 epochs`, or the steps where train.max_steps ended the run first."""
    epochs = f"{t['epochs']} epochs"
    if "steps" not in t or "effective_batch_size" not in t:
        return epochs
    return f"{t['steps']:,} steps of {t['effective_batch_size']} ({epochs} at most)"


def _rows(r: dict[str, Any]) -> list[str]:
    t, e = r["train"], r["eval"]
    ood, behaviour, served = e.get("out_of_domain", {}), e.get("behaviour", {}), e["served"]
    hw = f"{r['cpus']} CPUs ({r['cpu'] or 'unknown model'})" + (
        f", {r['gpu']}" if r["gpu"] else ", no GPU"
    )
    passed = {k: _pct(v["pass_rate"]) for k, v in behaviour.items()}
    return [
        f"{r['date']}, commit {r['commit']}, {hw}",
        f"{r['wall_s']:,.0f} s ({r['wall_s'] / 60:.1f} min; {r['wall_covers']})",
        f"{t['train_seconds']:,.0f} s, {_schedule(t)} at {t['train_examples_per_s']} "
        f"examples/s ({t['precision']})",
        f"{_pct(t['best_val_acc'])} ({t['val_records']:,} pairs)",
        f"**{_pct(e['accuracy'])}** / {_pct(e['macro_f1'])} ({e['n']:,} pairs)",
        f"{_pct(e['baselines']['hypothesis_only'])} / {_pct(e['baselines']['majority'])}",
        f"{_pct(ood['accuracy'])} / {_pct(ood['macro_f1'])} ({ood['n']:,} pairs)"
        if ood
        else "not measured",
        f"{passed.get('overall', '-')}",
        ", ".join(
            f"{k.replace('_', ' ')} {passed[k]}"
            for k in (*BASIC, "punctuation_spacing")
            if k in passed
        ),
        ", ".join(f"{k.replace('_', ' ')} {passed[k]}" for k in HARD if k in passed),
        f"{served['runtime']} ({served['quantize']}): agreement "
        f"{_pct(served['argmax_agreement'])}, dev {_pct(served['accuracy'])}",
    ]


LABELS = (
    "run on",
    "wall time after the install",
    "training (validation included)",
    "validation accuracy (held out of the train file)",
    "**dev accuracy** / macro-F1",
    "dev: hypothesis-only baseline / majority class",
    "out of domain: KorNLI's XNLI test, accuracy / macro-F1",
    "behaviour suite, overall (330 cases)",
    "the five basic capabilities",
    "the six hard ones",
    "served runtime: agreement with PyTorch, dev accuracy",
)


def render(records: dict[str, dict[str, Any]], folder: str) -> str:
    """The markdown table of the records (one column per recipe), as the pages show it,
    linking each record in `folder` (relative to the project root)."""
    names = [name for name in SHOWN if name in records]
    header = "| figure | " + " | ".join(f"`make {_target(n)}`" for n in names) + " |\n"
    header += "|---|" + "---|" * len(names) + "\n"
    columns = [_rows(records[n]) for n in names]
    body = "".join(
        f"| {label} | " + " | ".join(col[i] for col in columns) + " |\n"
        for i, label in enumerate(LABELS)
    )
    links = ", ".join(f"[{n}.json]({folder}/{n}.json)" for n in names)
    return header + body + f"\nEach column as its run wrote it: {links}.\n"


def _target(name: str) -> str:
    return {"e5-full": "run-e5"}.get(name, name)


def render_page(text: str, table: str) -> str:
    """`text` with the block between the markers replaced by `table`."""
    if START not in text:
        return text
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + table + END + tail


def page_table(page: str | Path, folder: str) -> str:
    """The table as `page` shows it: links relative to the page's own folder."""
    prefix = "../" * (len(Path(page).parts) - 1)
    return render(load_records(folder), f"{prefix}{folder}")


def main() -> None:
    """`klue-nli figures` (make figures): rewrite the pages' record blocks from
    paths.recipe_records."""
    folder = load_params().paths.recipe_records
    for page in PAGES:
        text = Path(page).read_text(encoding="utf-8")
        atomic_write_text(page, render_page(text, page_table(page, folder)))
        print(f"figures: {page}")
