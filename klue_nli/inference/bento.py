"""The BentoML model store side of serving: the name the service loads, and how a model folder
gets there. BentoML only: the service imports this, and must not pull in MLflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml

from klue_nli.core.errors import UserError

BENTO_MODEL = "klue-nli"  # the model in the BentoML store that the service loads (latest)
# The labels that say how the stored model was measured, and so how it is served
SERVED_RUNTIME, SERVED_QUANTIZE = "served_runtime", "served_quantize"


def served_variant(model: bentoml.Model) -> tuple[str, str]:
    """The runtime and precision evaluate measured the stored model as (`make export`
    records them): the only way the service runs it."""
    labels = model.info.labels
    if SERVED_RUNTIME not in labels or SERVED_QUANTIZE not in labels:
        raise UserError(
            f"{model.tag} records no served runtime and precision (exported before they were "
            "recorded): run `make export` again"
        )
    return labels[SERVED_RUNTIME], labels[SERVED_QUANTIZE]


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
