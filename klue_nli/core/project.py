"""The project folder the pipeline runs in: the one holding params.yaml, dvc.yaml, recipes/
and the stages, flows and service. The library never looks for it beside its own install
path: it is the working directory (DVC's and Prefect's convention) unless one is given."""

from __future__ import annotations

from pathlib import Path

from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE


def project_dir(path: str | Path | None = None) -> Path:
    """`path`, or the working directory, resolved; a UserError when it holds no params.yaml."""
    folder = Path(path or Path.cwd()).resolve()
    if not (folder / PARAMS_FILE).is_file():
        raise UserError(
            f"{folder} is not a project folder (no {PARAMS_FILE}): run this from the folder "
            "that holds params.yaml and dvc.yaml"
        )
    return folder
