"""A recipe run's record: what `klue-nli recipe NAME --run` measured, in one JSON file per
recipe (paths.recipe_records/NAME.json), written by the run itself. The README and
docs/model.md render their figures from these files (`make figures`, devtools/records_table.py).

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
from klue_nli.core.io import atomic_write_json
from klue_nli.core.params import PARAMS_FILE, load_params

TRAIN_KEYS = (
    "best_val_acc",
    "val_records",
    "epochs",
    "steps",
    "train_seconds",
    "train_examples_per_s",
    "precision",
    "effective_batch_size",
    "temperature",
    "unsure_below",
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
    "calibration",
    "unsure",
    "data",  # which dev file the figures are on: its sha256, bytes and pairs
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
    sets: dict[str, Any] | None = None,
    peak_rss_mb: float | None = None,
) -> Path | None:
    """Write paths.recipe_records/NAME.json from the metrics this run wrote (started: its
    start, as time.time()); None, and nothing written, when it wrote none. A run with keys
    set on top of the recipe is another run: NAME--KEY=VALUE.json, the keys in its record."""
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
    if sets:
        record["sets"] = dict(sets)
    if peak_rss_mb is not None:
        record["peak_rss_mb"] = round(peak_rss_mb)
    dest = Path(paths.recipe_records) / f"{record_name(name, sets)}.json"
    atomic_write_json(dest, record)
    return dest


def record_name(name: str, sets: dict[str, Any] | None = None) -> str:
    """`demo`, or `demo--seed=8` for the recipe with keys set on top (sorted by key)."""
    return name + "".join(f"--{key}={sets[key]}" for key in sorted(sets or {}))


def _gpu() -> str | None:
    """The GPU training could use (its name), None on a CPU-only machine."""
    import torch  # here only: the record names the hardware its figures hold on

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
