"""A recipe run's record (klue_nli/experiments/records.py): written from the metrics files that
run wrote, with the hardware it ran on; a previous run's files leave no record."""

from __future__ import annotations

import json
import os
import time

from klue_nli.experiments.records import write_record
from tests.conftest import default_params, write_params

TRAIN = {"best_val_acc": 0.75, "epochs": 5, "train_seconds": 2900.5, "world_size": 1}
EVAL = {"accuracy": 0.73, "macro_f1": 0.72, "n": 2400, "out_of_domain": {"accuracy": 0.6}}


def _write_metrics(work, mtime: float | None = None) -> None:
    (work / "metrics" / "train").mkdir(parents=True, exist_ok=True)
    files = {
        work / "metrics" / "train" / "metrics.json": TRAIN,
        work / "metrics" / "eval.json": {**EVAL, "confusion": [[1]]},
    }
    for path, body in files.items():
        path.write_text(json.dumps(body))
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def test_the_record_holds_the_runs_figures_and_its_hardware(workdir):
    params_file = write_params(workdir / "params.yaml", default_params())
    started = time.time() - 1
    _write_metrics(workdir)
    dest = write_record("e5-full", started, 3000.04, params_file)
    assert dest.resolve() == workdir / "metrics" / "recipes" / "e5-full.json"
    record = json.loads(dest.read_text())
    assert record["recipe"] == "e5-full"
    assert record["wall_s"] == 3000.0
    assert record["train"] == {"best_val_acc": 0.75, "epochs": 5, "train_seconds": 2900.5}
    assert record["eval"] == EVAL  # the report's figures, not its confusion matrix
    assert record["cpus"] >= 1 and isinstance(record["cpu"], str)
    assert "gpu" in record


def test_a_previous_runs_metrics_leave_no_record(workdir):
    params_file = write_params(workdir / "params.yaml", default_params())
    _write_metrics(workdir, mtime=time.time() - 3600)
    assert write_record("demo", time.time() - 60, 60.0, params_file) is None
    assert not (workdir / "metrics" / "recipes").exists()


def test_a_run_with_keys_set_on_top_of_the_recipe_is_recorded_as_another_run(workdir):
    """`klue-nli recipe demo --run --set seed=8` is not the demo recipe's run: its figures
    must not replace the recipe's record."""
    params_file = write_params(workdir / "params.yaml", default_params())
    _write_metrics(workdir)
    dest = write_record(
        "demo", time.time() - 1, 60.0, params_file, sets={"seed": 8}, peak_rss_mb=5120.4
    )
    assert dest.name == "demo--seed=8.json"
    record = json.loads(dest.read_text())
    assert record["sets"] == {"seed": 8} and record["peak_rss_mb"] == 5120
    assert not (workdir / "metrics" / "recipes" / "demo.json").exists()
