"""Team mode: share a training run with every other checkout."""

from __future__ import annotations

import subprocess
import sys

from prefect import task

from flows.stage import StageFailed, tool_env
from klue_nli.core.params import load_params


def uncached_outputs(paths) -> list[str]:
    """Every output dvc.yaml declares `cache: false`: git carries them, and a clone finds the
    pipeline up to date only if all of them travel (tests/unit/test_publish.py holds the
    list to dvc.yaml)."""
    return [
        f"{paths.train_live}/metrics.json",
        f"{paths.train_live}/plots",
        paths.eval_metrics,
        paths.confusion,
        paths.reliability,
        paths.risk_coverage,
    ]


@task
def publish(params_file: str, message: str) -> str:
    """Cached outputs go to the DVC remote (`dvc push`); dvc.lock, params.yaml and the uncached
    metrics and plots (git's, as DVC intends) to the git remote the checkout came from. A fresh
    clone then gets the run with `git pull` + `dvc pull` and finds the pipeline up to date.
    The new commit, or "nothing new to publish"."""
    tracked = ["dvc.lock", params_file, *uncached_outputs(load_params(params_file).paths)]

    def run(*args: str) -> str:
        proc = subprocess.run(args, capture_output=True, text=True, env=tool_env())
        if proc.returncode:
            raise StageFailed(f"{' '.join(args[:3])} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    run(sys.executable, "-m", "dvc", "push", "--quiet")
    run("git", "add", *tracked)
    if not run("git", "status", "--porcelain", *tracked).strip():
        return "nothing new to publish"
    run("git", "commit", "--quiet", "-m", message)
    run("git", "push", "--quiet", "origin", "HEAD")
    return run("git", "rev-parse", "HEAD").strip()
