"""The project folder the pipeline and the service run from: the one that holds params.yaml,
dvc.yaml, prefect.yaml and recipes/ beside the `klue_nli` package (a checkout, or a Bento's
root, whose bentofile.yaml includes params.yaml next to the package)."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
