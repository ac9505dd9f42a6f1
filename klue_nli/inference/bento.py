"""The BentoML model store side of serving: the name the service loads, and how a model folder
gets there. BentoML only: the service imports this, and must not pull in MLflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml

BENTO_MODEL = "klue-nli"  # the model in the BentoML store that the service loads (latest)


def latest() -> bentoml.Model | None:
    """The newest stored version of BENTO_MODEL (what the service serves), if any."""
    try:
        return bentoml.models.get(f"{BENTO_MODEL}:latest")
    except bentoml.exceptions.NotFound:
        return None


def store_model(model_dir: Path, labels: dict[str, str], metadata: dict | None = None) -> str:
    """Copy a model folder into the BentoML store as a new version of BENTO_MODEL; its tag."""
    with bentoml.models.create(BENTO_MODEL, labels=labels, metadata=metadata or {}) as bm:
        shutil.copytree(model_dir, bm.path, dirs_exist_ok=True)
    return str(bm.tag)
