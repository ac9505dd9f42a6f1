"""The sweep's experiments as a table: read from `dvc exp show --json`, best validation
accuracy first, and on a tie the cheaper schedule."""

from __future__ import annotations

from klue_nli.core.params import flatten

METRIC = "best_val_acc"  # train's DVCLive summary: the validation split's best epoch
# the grid's keys, the short name each has in an experiment's name, and its column
GRID = {
    "data.train_pairs": "n",
    "train.epochs": "ep",
    "train.learning_rate": "lr",
    "model.pooling": "",
    "train.precision": "",
    "train.warmup_ratio": "wu",
    "train.weight_decay": "wd",
    "train.layer_decay": "ld",
    "train.ema_decay": "ema",
    "train.swa_from": "swa",
    "data.kornli.add_dev_to_train": "xnli",
    "seed": "seed",  # the same point at several seeds: the spread a gain is read against
}
GRID_KEYS = tuple(GRID)
COLUMNS = {
    "data.train_pairs": "train pairs",
    "train.epochs": "epochs",
    "train.learning_rate": "learning rate",
    "model.pooling": "pooling",
    "train.precision": "precision",
    "train.warmup_ratio": "warmup",
    "train.weight_decay": "weight decay",
    "train.layer_decay": "layer decay",
    "train.ema_decay": "EMA",
    "train.swa_from": "SWA from",
    "data.kornli.add_dev_to_train": "+ XNLI dev",
    "seed": "seed",
}


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
                            "val_records": metrics.get("val_records"),
                            "train_seconds": metrics.get("train_seconds"),
                            "train_examples_per_s": metrics.get("train_examples_per_s"),
                        }
                    )
    return sorted(rows, key=lambda row: (-row[METRIC], _cost(row)))


def _accuracy(accuracy: float, pairs: int | None) -> str:
    """`74.56 % (929 of 1,246 pairs)`: a gain is read in pairs against the seed spread."""
    if not pairs:
        return f"{100 * accuracy:.2f} % (pairs not recorded)"
    return f"{100 * accuracy:.2f} % ({round(accuracy * pairs):,} of {pairs:,} pairs)"


def markdown(rows: list[dict]) -> str:
    head = ["experiment", *COLUMNS.values(), "validation accuracy", "train s", "examples/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["name"],
            *(str(row[key]) for key in GRID_KEYS),
            _accuracy(row[METRIC], row.get("val_records")),
            str(row["train_seconds"]),
            str(row["train_examples_per_s"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
