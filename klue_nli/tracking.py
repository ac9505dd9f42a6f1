"""MLflow conventions of the pipeline: where runs go and how they are tagged.

The embedded default is a SQLite store in the project; MLFLOW_TRACKING_URI points it at a
server, and MLFLOW_EXPERIMENT_NAME picks another experiment, as in any MLflow project.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import yaml

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "klue-nli"
LOCK_FILE = "dvc.lock"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def redact(value: str) -> str:
    """A param value as it may be logged: a local absolute path becomes `<local>/<name>`
    (the MLflow store is shared; a home folder is not its business), and credentials in a
    URL are dropped. Anything else is returned as it is."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme == "file":
        return f"<local>/{PurePosixPath(parsed.path).name}"
    if parsed.scheme and parsed.netloc:
        if parsed.username or parsed.password:
            host = parsed.hostname or ""
            netloc = f"{host}:{parsed.port}" if parsed.port else host
            return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
        return value
    if value.startswith(("/", "~")):
        return f"<local>/{PurePosixPath(value).name}"
    return value


def source_name() -> str:
    """The running script, relative to the project (the working folder) when inside it."""
    script = Path(sys.argv[0]).resolve()
    try:
        return script.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(script)


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


@contextlib.contextmanager
def run_env(run_id: str) -> Iterator[None]:
    """MLFLOW_RUN_ID set for a while (for processes started meanwhile, e.g. DDP workers),
    then as it was: a second train() in the same process must not log into this run."""
    before = os.environ.get("MLFLOW_RUN_ID")
    os.environ["MLFLOW_RUN_ID"] = run_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_RUN_ID", None)
        else:
            os.environ["MLFLOW_RUN_ID"] = before
