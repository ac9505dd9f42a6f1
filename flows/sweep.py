"""`make sweep`: a grid of DVC experiments on the demo recipe, ranked by validation accuracy.
Each experiment runs the pipeline up to `train` only, so dev is never evaluated, let alone
used to choose: the choice is made on the premises held out of the train file.

    python -m flows.sweep [--pairs 8000 16000] [--epochs 1] [--lr 5e-5 1e-4]
                          [--pooling cls mean] [--precision bf16-mixed] [--dry-run]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from flows.recipes import set_args
from klue_nli.core.cli import require_command
from klue_nli.core.params import PARAMS_FILE, flatten
from klue_nli.registry.tracking import DEFAULT_TRACKING_URI

METRIC = "best_val_acc"  # train's DVCLive summary: the validation split's best epoch
# the grid's keys, and the short name each has in an experiment's name
GRID = {
    "data.train_pairs": "n",
    "train.epochs": "ep",
    "train.learning_rate": "lr",
    "model.pooling": "",
    "train.precision": "",
}
GRID_KEYS = tuple(GRID)


def queue_commands(grid: dict[str, list[str]], base: list[str]) -> list[list[str]]:
    """One `dvc exp run --queue` per point of the grid (every key of GRID given values)."""
    commands = []
    for values in itertools.product(*(grid[key] for key in GRID_KEYS)):
        name = "sweep-" + "-".join(f"{GRID[k]}{v}" for k, v in zip(GRID_KEYS, values, strict=True))
        sets = [a for k, v in zip(GRID_KEYS, values, strict=True) for a in ("-S", f"{k}={v}")]
        commands.append(["dvc", "exp", "run", "--queue", "-n", name, *base, *sets, "train"])
    return commands


def _cost(row: dict) -> float:
    """Training examples the schedule reads (all of the train file: counted as infinite)."""
    pairs = row["data.train_pairs"]
    return float("inf") if pairs is None else int(pairs) * int(row["train.epochs"] or 0)


def ranked(experiments: list[dict]) -> list[dict]:
    """Rows of `dvc exp show --json`, flattened to name, grid values and validation accuracy,
    best first, and on a tie the cheaper schedule first (fewer pairs x epochs); experiments
    without the metric (failed, or not a sweep's) are left out."""
    rows = []
    for commit in experiments:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data") or {}
                name = rev.get("name") or data.get("name") or ""
                if not name.startswith("sweep-"):
                    continue
                metrics = {}
                for source in (data.get("metrics") or {}).values():
                    metrics.update(flatten(source.get("data", {})))
                params = {}
                for source in (data.get("params") or {}).values():
                    params.update(flatten(source.get("data", {})))
                if METRIC in metrics:
                    rows.append(
                        {
                            "name": name,
                            **{key: params.get(key) for key in GRID_KEYS},
                            METRIC: metrics[METRIC],
                            "train_seconds": metrics.get("train_seconds"),
                            "train_examples_per_s": metrics.get("train_examples_per_s"),
                        }
                    )
    return sorted(rows, key=lambda row: (-row[METRIC], _cost(row)))


def wait_for_queue(env: dict, poll_s: float = 15.0) -> None:
    """Until `dvc queue status` lists no queued or running experiment."""
    seen = ""
    while True:
        status = subprocess.run(
            ["dvc", "queue", "status"], check=True, env=env, capture_output=True, text=True
        ).stdout
        busy = [line for line in status.splitlines() if re.search(r"\b(Queued|Running)\b", line)]
        if not busy:
            return
        if busy[0] != seen:  # progress, one line per experiment started
            seen = busy[0]
            print(f"sweep: {len(busy)} to go; {' '.join(seen.split()[:2])}", flush=True)
        time.sleep(poll_s)


def markdown(rows: list[dict]) -> str:
    head = (
        "| experiment | train pairs | epochs | learning rate | pooling | precision "
        "| validation accuracy | train s | examples/s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['data.train_pairs']} | {row['train.epochs']} | "
            f"{row['train.learning_rate']} | {row['model.pooling']} | "
            f"{row['train.precision']} | {row[METRIC]:.3f} | "
            f"{row['train_seconds']} | {row['train_examples_per_s']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["8000", "16000"], help="data.train_pairs")
    parser.add_argument("--epochs", nargs="+", default=["1"], help="train.epochs")
    parser.add_argument("--lr", nargs="+", default=["5e-5", "1e-4"], help="train.learning_rate")
    parser.add_argument("--pooling", nargs="+", default=["cls", "mean"], help="model.pooling")
    parser.add_argument("--precision", nargs="+", default=["bf16-mixed"], help="train.precision")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    values = (args.pairs, args.epochs, args.lr, args.pooling, args.precision)
    grid = dict(zip(GRID_KEYS, values, strict=True))
    with open(PARAMS_FILE, encoding="utf-8") as fh:
        current = flatten(yaml.safe_load(fh) or {})
    # the demo's inputs, but not its grid keys: each experiment sets those itself
    base = set_args("demo", current, os.environ)
    base = [
        a
        for pair in zip(base[::2], base[1::2], strict=True)
        if not pair[1].startswith(GRID_KEYS)
        for a in pair
    ]
    commands = queue_commands(grid, base)
    if args.dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return
    require_command("dvc", "sweep")
    # one tracking store for every queued run (each runs in its own temporary copy)
    env = {**os.environ}
    if DEFAULT_TRACKING_URI.startswith("sqlite:///") and "MLFLOW_TRACKING_URI" not in env:
        env["MLFLOW_TRACKING_URI"] = "sqlite:///" + str(Path(DEFAULT_TRACKING_URI[10:]).resolve())
    baseline = subprocess.run(
        ["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        for command in commands:
            subprocess.run(command, check=True, env=env)
        # one at a time: two trainings on the same cores only slow each other down. (`dvc exp
        # run --run-all` was seen to hang here after the last experiment had finished.)
        subprocess.run(["dvc", "queue", "start", "-j", "1"], check=True, env=env)
        wait_for_queue(env)
        # the commit the experiments were queued from, even if HEAD has moved on since
        shown = subprocess.run(
            ["dvc", "exp", "show", "--json", "--rev", baseline],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        failed = " ".join(exc.cmd)
        print(f"sweep: error: `{failed}` failed (exit {exc.returncode})", file=sys.stderr)
        raise SystemExit(1) from None
    rows = ranked(json.loads(shown.stdout))
    if not rows:
        print("sweep: no experiment finished; see `dvc queue logs`", file=sys.stderr)
        raise SystemExit(1)
    print(markdown(rows))
    best = rows[0]
    print(
        f"\nbest on validation: {best['name']} "
        f"({', '.join(f'{key}={best[key]}' for key in GRID_KEYS)}); "
        f"`dvc exp apply {best['name']}` applies it"
    )


if __name__ == "__main__":
    main()
