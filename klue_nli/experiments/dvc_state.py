"""What DVC says about the project's state, from its JSON output or its Python API, never from
the text it prints for people. Each call is one guarded seam: if DVC moves what it relies on,
the error names the installed version and the one the project pins."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from klue_nli.core.errors import UserError

PINNED = "3.67.1"  # constraints.txt: what these seams are tested against
BUSY = ("Queued", "Running")  # the queue's states of an experiment not yet finished


def _moved(what: str, exc: Exception) -> UserError:
    return UserError(
        f"DVC {version('dvc')}: {what} is not what the project expects (tested with dvc "
        f"{PINNED}; {type(exc).__name__}: {exc})"
    )


def stage_changed(stage: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> bool:
    """Whether `dvc repro --single-item stage` would run it: `dvc status --json stage` lists
    the stage when a dependency, a param or an output changed (or went missing)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", stage],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise UserError(f"dvc status {stage}: {last}")
    try:
        status = json.loads(proc.stdout or "{}")
        return any(name == stage or name.endswith(f":{stage}") for name in status)
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise _moved("`dvc status --json`", exc) from None


def queue_busy(root: Path | str = ".") -> list[dict]:
    """The queue's experiments still queued or running ({'name', 'rev', 'status', ...}), from
    the API `dvc queue status` itself prints from."""
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            tasks = repo.experiments.celery_queue.status()
        return [task for task in tasks if task["status"] in BUSY]
    except (AttributeError, KeyError, TypeError) as exc:
        raise _moved("experiments.celery_queue.status()", exc) from None
