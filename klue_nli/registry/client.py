"""The MLflow registry client and what every registry command shares: the aliases, the
per-machine promotion lock, a version's recorded metrics."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from klue_nli.core.errors import UserError
from klue_nli.registry import tracking

CHAMPION = "champion"
PREVIOUS = "previous"


def client() -> MlflowClient:
    mlflow.set_tracking_uri(tracking.tracking_uri())
    return MlflowClient()


def version_metrics(version: ModelVersion) -> dict[str, float]:
    """The eval metrics recorded on a version as `eval.*` tags."""
    return {
        key.removeprefix("eval."): float(value)
        for key, value in version.tags.items()
        if key.startswith("eval.")
    }


def evidence(version: ModelVersion) -> dict[str, float | str]:
    """What the promotion policy reads of a version: its `eval.*` figures, the served runtime
    and precision they were measured with, and the dev file's sha256 (absent keys stay
    absent: the policy refuses on them)."""
    keys = ("served.runtime", "served.quantize", "data.dev_sha256")
    return {**version_metrics(version), **{k: version.tags[k] for k in keys if k in version.tags}}


def alias_version(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def registry_lock(name: str) -> FileLock:
    key = hashlib.sha256(f"{tracking.tracking_uri()}|{name}".encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"klue-nli-registry-{key}.lock", timeout=120)


def get_version(c: MlflowClient, name: str, version: str | None) -> ModelVersion:
    try:
        if version is not None:
            return c.get_model_version(name, version)
        versions = c.search_model_versions(f"name='{name}'", order_by=["version_number DESC"])
    except MlflowException as exc:
        raise UserError(f"{name}: {exc.message}") from None
    if not versions:
        raise UserError(f"{name}: no registered versions; run `make register` first")
    return versions[0]
