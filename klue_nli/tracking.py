"""MLflow conventions of the pipeline: where runs go and how they are tagged.

The embedded default is a SQLite store in the project; MLFLOW_TRACKING_URI points it at a
server, and MLFLOW_EXPERIMENT_NAME picks another experiment, as in any MLflow project.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "klue-nli"
LOCK_FILE = "dvc.lock"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def git_commit() -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def dvc_hashes(stages: tuple[str, ...] = ("download", "featurize")) -> dict[str, str]:
    """The md5 DVC recorded in dvc.lock for these stages' outputs (written as each stage ends)."""
    try:
        lock = yaml.safe_load(Path(LOCK_FILE).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    hashes = {}
    for stage in stages:
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            hashes[f"dvc.{stage}.{out['path']}"] = out.get("md5", "unknown")
    return hashes
