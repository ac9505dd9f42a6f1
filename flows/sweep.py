"""`make sweep`: a small grid of DVC experiments on the demo recipe, ranked by validation
accuracy. Each experiment runs the pipeline up to `train` only, so dev is never evaluated,
let alone used to choose: the choice is made on the premises held out of the train file.

    python -m flows.sweep [--lr 5e-5 1e-4 2e-4] [--epochs 3 4] [--max-len 64] [--dry-run]
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
from klue_nli.core.params import PARAMS_FILE, flatten
from klue_nli.registry.tracking import DEFAULT_TRACKING_URI

METRIC = "best_val_acc"  # train's DVCLive summary: the validation split's best epoch
GRID_KEYS = ("train.learning_rate", "train.epochs", "featurize.max_seq_length")


def queue_commands(
    lrs: list[str], epochs: list[str], base: list[str], lengths: tuple[str, ...] = ("64",)
) -> list[list[str]]:
    commands = []
    for lr, n, length in itertools.product(lrs, epochs, lengths):
        name = f"sweep-lr{lr}-ep{n}" + ("" if length == "64" else f"-len{length}")
        grid = ["-S", f"train.learning_rate={lr}", "-S", f"train.epochs={n}"]
        grid += ["-S", f"featurize.max_seq_length={length}"]
        commands.append(["dvc", "exp", "run", "--queue", "-n", name, *base, *grid, "train"])
    return commands


def ranked(experiments: list[dict]) -> list[dict]:
    """Rows of `dvc exp show --json`, flattened to name, grid values and validation accuracy,
    best first, and on a tie the shorter schedule first (the cheaper of two equal choices);
    experiments without the metric (failed, or not a sweep's) are left out."""
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
                        }
                    )
    return sorted(rows, key=lambda row: (-row[METRIC], int(row["train.epochs"] or 0)))


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
    head = "| experiment | learning rate | epochs | max length | validation accuracy | train s |"
    lines = [head, "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['train.learning_rate']} | {row['train.epochs']} | "
            f"{row['featurize.max_seq_length']} | {row[METRIC]:.3f} | {row['train_seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", nargs="+", default=["5e-5", "1e-4", "2e-4"])
    parser.add_argument("--epochs", nargs="+", default=["3", "4"])
    parser.add_argument("--max-len", nargs="+", default=["64"], help="featurize.max_seq_length")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
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
    commands = queue_commands(args.lr, args.epochs, base, tuple(args.max_len))
    if args.dry_run:
        print("\n".join(" ".join(c) for c in commands))
        return
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
        f"\nbest on validation: {best['name']} (learning rate {best['train.learning_rate']}, "
        f"{best['train.epochs']} epochs); `dvc exp apply {best['name']}` applies it"
    )


if __name__ == "__main__":
    main()
