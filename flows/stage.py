"""Run one DVC stage as a Prefect task: `dvc repro --single-item <stage>`, so DVC still decides
what is up to date and writes dvc.lock, while Prefect shows the stage's state, time and log.
Whether it is up to date comes from `dvc status --json` (klue_nli/experiments/dvc_state.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger, task

from klue_nli.core.errors import UserError
from klue_nli.experiments.dvc_state import stage_changed


class StageFailed(UserError):
    """A DVC stage (or a command after it) failed; the message is its own error line (the
    CLI, which loads the flow from its file, prints it as any UserError)."""


def tool_env() -> dict[str, str]:
    """The environment for the tools the flow runs: this interpreter's virtualenv first on
    PATH, so the stages' `python` is the project's."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path}


@task(task_run_name="{stage}")
def dvc_stage(stage: str) -> str:
    """Run one DVC stage if it is out of date; 'ran' or 'up to date'."""
    logger = get_run_logger()
    if not stage_changed(stage, env=tool_env()):
        logger.info(f"{stage}: up to date")
        return "up to date"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=tool_env(),
    )
    lines = []
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line and "\r" not in line:  # skip progress-bar redraws
            logger.info(line)
    if proc.wait() != 0:
        own = [ln for ln in lines if ln.startswith(f"{stage}: error:")]
        message = own[-1] if own else "\n".join(lines[-5:])
        raise StageFailed(message)
    return "ran"
