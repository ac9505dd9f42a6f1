"""`make sweep`: a grid of DVC experiments on the demo recipe, ranked by validation accuracy.
Each experiment runs the pipeline up to `train` only, so dev is never evaluated, let alone
used to choose: the choice is made on the premises held out of the train file.

    klue-nli sweep [--pairs "8000 16000"] [--epochs 1] [--lr "5e-5 1e-4"]
                   [--pooling "cls mean"] [--precision bf16-mixed] [--warmup "0 0.1"]
                   [--weight-decay "0.01 0.001"] [--layer-decay "1.0 0.8"]
                   [--ema "null 0.999"] [--swa "null 0.75"] [--xnli "false true"] [--seed "7 8 9"]
                   [--one-at-a-time] [--dry-run]

An axis left empty keeps the demo recipe's value (the last seven are empty by default).
`--seed "7 8 9"` runs each point at each seed: a gain smaller than the spread between seeds
is not a gain.
`--one-at-a-time` varies one axis at a time around the first value of each (1 + sum(k - 1)
experiments instead of every combination): the cheap ranking before a confirmation.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from klue_nli.core.cpus import cpu_description
from klue_nli.core.env import require_command
from klue_nli.core.io import atomic_write_text
from klue_nli.core.params import load_params
from klue_nli.experiments.dvc_state import queue_busy
from klue_nli.experiments.ranking import GRID, GRID_KEYS, markdown, ranked
from klue_nli.experiments.recipes import SOURCE_KEYS, recipe_args
from klue_nli.registry.tracking import DEFAULT_TRACKING_URI


def absolute_paths(args: list[str], cwd: Path) -> list[str]:
    """`-S key=value` arguments with a relative local folder made absolute: a queued
    experiment runs in a temporary copy of the project, where `../shared/...` is not there."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in SOURCE_KEYS and not Path(value).is_absolute() and (cwd / value).exists():
            arg = f"{key}={(cwd / value).resolve()}"
        out.append(arg)
    return out


def points(grid: dict[str, list[str]], one_at_a_time: bool = False) -> list[tuple[str, ...]]:
    """The grid's points over its keys given values: every combination, or (one at a time)
    the first value of each axis, then each other value of one axis with the rest at their
    first: 1 + sum(k - 1) runs instead of the product, for ranking many axes cheaply."""
    axes = [grid[key] for key in GRID_KEYS if grid.get(key)]
    if not one_at_a_time:
        return list(itertools.product(*axes))
    centre = tuple(values[0] for values in axes)
    out = [centre]
    for i, values in enumerate(axes):
        out += [(*centre[:i], value, *centre[i + 1 :]) for value in values[1:]]
    return out


def queue_commands(
    grid: dict[str, list[str]], base: list[str], one_at_a_time: bool = False
) -> list[list[str]]:
    """One `dvc exp run --queue` per point of the grid: the keys of GRID given values (an
    axis given none keeps the demo's value), named by the values."""
    keys = [key for key in GRID_KEYS if grid.get(key)]
    commands = []
    for values in points(grid, one_at_a_time):
        name = "sweep-" + "-".join(f"{GRID[k]}{v}" for k, v in zip(keys, values, strict=True))
        sets = [a for k, v in zip(keys, values, strict=True) for a in ("-S", f"{k}={v}")]
        commands.append(["dvc", "exp", "run", "--queue", "-n", name, *base, *sets, "train"])
    return commands


def wait_for_queue(poll_s: float = 15.0) -> None:
    """Until DVC's queue holds no queued or running experiment."""
    seen = ""
    while True:
        busy = queue_busy()
        if not busy:
            return
        running = next((t for t in busy if t["status"] == "Running"), busy[0])
        now = f"{running.get('name') or running['rev'][:7]} {running['status'].lower()}"
        if now != seen:  # progress, one line per experiment started
            seen = now
            print(f"sweep: {len(busy)} to go; {now}", flush=True)
        time.sleep(poll_s)


def sweep(grid: dict[str, list[str]], dry_run: bool = False, one_at_a_time: bool = False) -> None:
    """Queue one experiment per point of `grid` (GRID's keys) on the demo recipe, run them one
    at a time, and print them ranked by validation accuracy."""
    # the demo's inputs, but not the axes swept: each experiment sets those itself
    swept = tuple(f"{key}=" for key in GRID_KEYS if grid.get(key))
    base = recipe_args("demo", os.environ)
    base = [
        a
        for pair in zip(base[::2], base[1::2], strict=True)
        if not pair[1].startswith(swept)
        for a in pair
    ]
    commands = queue_commands(grid, absolute_paths(base, Path.cwd()), one_at_a_time)
    if dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return
    require_command("dvc")
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
        # one at a time: two trainings on the same cores only slow each other down. The queue
        # is started and then polled, rather than `dvc exp run --run-all`, which can hang
        # after the last experiment has finished.
        subprocess.run(["dvc", "queue", "start", "-j", "1"], check=True, env=env)
        wait_for_queue()
    except subprocess.CalledProcessError as exc:
        failed = " ".join(exc.cmd)
        print(f"sweep: error: `{failed}` failed (exit {exc.returncode})", file=sys.stderr)
        raise SystemExit(1) from None
    report(baseline, env)


def report(rev: str = "HEAD", env: dict | None = None, commits: int = 1) -> list[dict]:
    """Rank the sweep experiments queued from commit `rev` (even if HEAD has moved on since)
    and the `commits` - 1 before it, print the table and write it to paths.sweep_table with
    how it was measured."""
    try:
        shown = subprocess.run(
            ["dvc", "exp", "show", "--json", "--rev", rev, "-n", str(commits)],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        print(f"sweep: error: dvc exp show failed: {exc.stderr.strip()}", file=sys.stderr)
        raise SystemExit(1) from None
    rows = ranked(json.loads(shown.stdout))
    if not rows:
        print("sweep: no experiment finished; see `dvc queue logs`", file=sys.stderr)
        raise SystemExit(1)
    best = rows[0]
    verdict = (
        f"best on validation: {best['name']} "
        f"({', '.join(f'{key}={best[key]}' for key in GRID_KEYS)}); "
        f"`dvc exp apply {best['name']}` applies it"
    )
    table = markdown(rows)
    print(f"{table}\n\n{verdict}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short=10", rev], capture_output=True, text=True
    ).stdout.strip()
    cpu = cpu_description()["model"]
    heading = (
        f"# make sweep, {datetime.now(UTC).date()}\n\n"
        f"Validation accuracy (never dev) of the experiments queued from commit {commit or rev}"
        + (f" and the {commits - 1} before it" if commits > 1 else "")
        + ", "
        f"on {os.cpu_count()} CPUs ({cpu}); train s is the cost of each (training and "
        "validation), comparable only between experiments run in one sweep.\n\n"
    )
    atomic_write_text(load_params().paths.sweep_table, f"{heading}{table}\n\n{verdict}\n")
    return rows
