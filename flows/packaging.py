"""Package the champion: export it to the BentoML model store and build the Bento."""

from __future__ import annotations

import subprocess
import sys

from prefect import task

from flows.stage import StageFailed, tool_env
from klue_nli.core.params import load_params
from klue_nli.registry.export import export_champion


@task
def package(params_file: str) -> str:
    """`make export` + `bentoml build`; the model's and the Bento's tags."""
    tag = export_champion(load_params(params_file))
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    if proc.returncode:
        raise StageFailed(f"bentoml build failed: {proc.stderr.strip()[-500:]}")
    return f"{tag} in bento {proc.stdout.strip().splitlines()[-1].removeprefix('__tag__:')}"
