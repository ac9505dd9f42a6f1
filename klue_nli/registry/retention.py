"""Registry retention: weekly retraining must not grow storage without bound.

`retire_old_versions` keeps the newest `registry.keep_versions` versions and always the
`champion` and `previous` aliases; every other version is deleted from the registry and its
logged model is marked deleted. `mlflow gc` (`make gc` runs both) then removes those models'
artifacts from the artifact store for good. The runs stay: their metrics are small and the
history of what was tried is what the MLflow UI is for.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sqlalchemy.engine import make_url

from klue_nli.core.errors import UserError
from klue_nli.core.params import Params
from klue_nli.core.secrets import hide_password
from klue_nli.registry.client import CHAMPION, PREVIOUS, alias_version, client, registry_lock
from klue_nli.registry.model_card import policy_card
from klue_nli.registry.tracking import tracking_uri


def retire_old_versions(params: Params) -> list[tuple[str, str | None]]:
    """Delete the versions beyond retention and mark their logged models deleted; returns
    (version, logged model id) of each, oldest first."""
    name, keep, c = params.registry.model_name, params.registry.keep_versions, client()
    with registry_lock(name):
        try:
            versions = c.search_model_versions(f"name='{name}'", order_by=["version_number DESC"])
        except MlflowException:
            return []  # no such model yet: nothing to keep tidy
        protected = {
            v.version for v in (alias_version(c, name, a) for a in (CHAMPION, PREVIOUS)) if v
        }
        newest = {v.version for v in versions[:keep]}
        c.update_registered_model(name, policy_card(name, params.registry))  # the rule applied
        gone = []
        for version in reversed(versions):
            if version.version in protected | newest:
                continue
            c.delete_model_version(name, version.version)
            model_id = logged_model_id(version)
            if model_id:
                c.delete_logged_model(model_id)
            gone.append((version.version, model_id))
    return gone


def purge_artifacts(model_ids: list[str]) -> None:
    """`mlflow gc` of these deleted logged models: their rows and their artifacts, for good.

    gc talks to the database itself: `MLFLOW_BACKEND_STORE_URI` (the tracking server's
    `--backend-store-uri`), or the tracking URI when it is a database already (the default
    local store). Artifacts behind a server's proxy are deleted through MLFLOW_TRACKING_URI."""
    if not model_ids:
        return
    store = os.environ.get("MLFLOW_BACKEND_STORE_URI") or tracking_uri()
    if store.startswith(("http://", "https://")):
        raise UserError(
            "mlflow gc needs the tracking server's database: set MLFLOW_BACKEND_STORE_URI "
            "(the server's --backend-store-uri)"
        )
    store, env = _password_to_env(store)
    cmd = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", store]
    cmd += ["--logged-model-ids", ",".join(model_ids)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"mlflow gc failed: {hide_password(last)}")


def _password_to_env(store: str) -> tuple[str, dict[str, str]]:
    """The database URI for gc's command line, which any local user can read (ps), and the
    environment that carries its password instead: PGPASSWORD, which PostgreSQL's client
    library reads. A password for any other database is refused rather than shown."""
    env = dict(os.environ)
    url = make_url(store) if "://" in store else None
    if url is None or url.password is None:
        return store, env
    if not url.get_backend_name().startswith("postgresql"):
        raise UserError(
            f"mlflow gc: {url.render_as_string(hide_password=True)}: give the password in the "
            "database client's own configuration, not the URI (it would show on a command line)"
        )
    env["PGPASSWORD"] = str(url.password)
    return url._replace(password=None).render_as_string(hide_password=False), env


def logged_model_id(version: ModelVersion) -> str | None:
    """The logged model that holds a version's files (a `models:/m-…` source names it)."""
    source = version.source or ""
    from_source = (
        source.removeprefix("models:/").split("/")[0] if source.startswith("models:/") else None
    )
    return version.model_id or from_source
