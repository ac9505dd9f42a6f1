"""End to end: real git + DVC (`dvc exp run`, as `make demo` does), the download served from a
loopback HTTP server, the embedded MLflow store. Checks reproducibility and invalidation."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from devtools.sandbox import make_project, project_env
from klue_nli.data.klue import split_filename
from tests.conftest import ROOT

# Shrink the quick recipe further so the test stays quick; the rest is the quick recipe.
FAST = [
    "-S",
    "train.max_steps=30",
    "-S",
    "model.random.hidden_size=32",
    "-S",
    "model.random.intermediate_size=64",
]


def sh(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{shlex.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def recipe(name: str, cwd: Path, env: dict) -> list[str]:
    out = sh([sys.executable, "-m", "klue_nli.cli", "recipe", name], cwd, env).stdout
    return shlex.split(out)


@pytest.mark.slow
def test_dvc_pipeline_end_to_end(tmp_path, loopback, kcbert, klue_dir):
    env = project_env(KLUE_NLI_MIRROR=loopback.url, KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)

    run = sh(["dvc", "exp", "run", *recipe("quick", project, env), *FAST], project, env)
    for stage in ("download", "featurize", "train", "evaluate"):
        assert f"Running stage '{stage}'" in run.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["model"]["init"] == "random"

    started = time.perf_counter()
    again = sh(["dvc", "repro"], project, env)
    elapsed = time.perf_counter() - started
    assert "Running stage" not in again.stdout
    assert again.stdout.count("didn't change, skipping") == 4
    assert elapsed < 5, f"no-op dvc repro took {elapsed:.1f}s"
    assert "up to date" in sh(["dvc", "status"], project, env).stdout

    metrics = sh(["dvc", "metrics", "show"], project, env).stdout
    assert "metrics/eval.json" in metrics and "accuracy" in metrics and "best_val_acc" in metrics
    sh(["dvc", "plots", "show", "-o", "dvc_plots"], project, env)
    html = (project / "dvc_plots" / "index.html").read_text()
    assert "confusion" in html and "val_epochs" in html

    # the embedded MLflow store holds one run with params, metrics, lineage and the model
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    data = runs[0].data
    assert data.params["featurize.max_seq_length"] == "64"
    assert "eval/accuracy" in data.metrics and "val/acc" in data.metrics
    assert any(t.startswith("dvc.featurize.") for t in data.tags), data.tags
    assert len(data.tags["git_commit"]) >= 40
    models = client.search_logged_models([runs[0].info.experiment_id])
    assert [m.source_run_id for m in models] == [runs[0].info.run_id]

    # editing a module that featurize imports makes featurize and everything after it stale
    encoding = project / "klue_nli" / "data" / "encoding.py"
    original = encoding.read_text()
    encoding.write_text(original + "\n# an edit\n")
    changed = json.loads(sh(["dvc", "status", "--json"], project, env).stdout)
    assert {"featurize", "train", "evaluate"} <= set(changed) and "download" not in changed
    encoding.write_text(original)
    assert "up to date" in sh(["dvc", "status"], project, env).stdout

    # a change of the dev file alone re-runs evaluate and nothing upstream of it
    dev_file = project / "data" / "raw" / split_filename("dev")
    dev_before = dev_file.read_bytes()
    examples = json.loads(dev_before)
    dev_file.write_text(json.dumps(examples[:-3], ensure_ascii=False), encoding="utf-8")
    changed = json.loads(sh(["dvc", "status", "--json"], project, env).stdout)
    assert "evaluate" in changed and not {"featurize", "train"} & set(changed), changed
    dev_file.write_bytes(dev_before)
    assert "up to date" in sh(["dvc", "status"], project, env).stdout

    # a different mirror re-runs download only: the bytes are the same, so nothing downstream
    env["KLUE_NLI_MIRROR"] = str(klue_dir)
    moved = sh(["dvc", "exp", "run", *recipe("quick", project, env), *FAST], project, env)
    assert "Running stage 'download'" in moved.stdout
    assert "Running stage 'featurize'" not in moved.stdout
    # a different kcbert folder invalidates featurize (and what follows), not download
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(
        params.replace(f"name_or_path: {kcbert}", "name_or_path: somewhere/else")
    )
    status = sh(["dvc", "status", "--json"], project, env).stdout
    changed = json.loads(status)
    assert "featurize" in changed and "download" not in changed
