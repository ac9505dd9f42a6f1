"""Prefect flow: retrain, evaluate, register, promote and package the KLUE-NLI model.

The flow calls one small task per job (modules of flows/): each DVC stage
(stage.py), the export of the accepted corrections (feedback.py) between download and
featurize, registration and promotion (below), publishing to the team's remotes (publish.py),
the Bento (packaging.py) and the run's report (report.py). Its parameters (a recipe, and keys
to set) become `-S key=value` overrides applied as `dvc exp run -S` applies them
(klue_nli/experiments/overrides.py), recorded in dvc.lock by the run. Prefect loads it by its
entrypoint, `flows/training.py:training_flow` (prefect.yaml, `klue-nli flow`, `klue-nli deploy`).

    klue-nli flow                    # once, on the ephemeral local Prefect API (make flow)
    klue-nli flow --recipe quick     # the plumbing run, in minutes (KLUE_NLI_MIRROR, KCBERT_DIR)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, task

from flows.feedback import export_feedback
from flows.packaging import package
from flows.publish import publish
from flows.report import write_report
from flows.stage import dvc_stage
from klue_nli.core.env import apply_quiet_defaults
from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.core.project import project_dir as find_project
from klue_nli.experiments.overrides import apply_sets
from klue_nli.experiments.recipes import recipe_args
from klue_nli.registry.client import CHAMPION, alias_version, client
from klue_nli.registry.promotion import comparison, promote
from klue_nli.registry.register import register

# The project folder this file lives in: a checkout, or a worker's clone (prefect.yaml's pull).
PROJECT = Path(__file__).resolve().parents[1]
STAGES = ("download", "featurize", "train", "evaluate")
LOCK_FILE = ".pipeline.lock"


@task
def register_and_promote(params_file: str) -> dict[str, Any]:
    params = load_params(params_file)
    name = params.registry.model_name
    before = alias_version(client(), name, CHAMPION)
    version = register(params)
    version, decision = promote(params, version.version)
    return {
        "version": str(version.version),
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "comparison": comparison(version, before),
    }


@flow(name="klue-nli-training", log_prints=True)
def training_flow(
    recipe: str | None = None,
    epochs: int | None = None,
    model_name: str | None = None,
    set_params: dict[str, Any] | None = None,
    project_dir: str | None = None,
    build_bento: bool = True,
    publish_results: bool = False,
) -> dict[str, Any]:
    """recipe: a file of recipes/ ('demo', 'quick', 'full', ...); epochs, model_name and
    set_params ({"train.learning_rate": 3e-5, ...}) set params.yaml keys on top of it.
    publish_results (team deployments, prefect.yaml): push the outputs to the DVC remote and
    dvc.lock to git."""
    apply_quiet_defaults()
    os.chdir(find_project(project_dir or PROJECT))
    sets = dict(set_params or {})
    if epochs is not None:
        sets["train.epochs"] = epochs
    if model_name is not None:
        sets["model.name_or_path"] = model_name
    try:
        lock = FileLock(LOCK_FILE, timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(
            f"another pipeline run holds {LOCK_FILE}; not starting a second one"
        ) from None
    try:
        changed = apply_sets(Path(PARAMS_FILE), recipe_args(recipe, os.environ, sets))
        if changed:
            print(f"params.yaml overrides: {changed}")
        # No task retries: the download stage retries transient failures itself (data.retries,
        # with backoff), under `dvc repro` as here; one layer, not 4 x 4 attempts.
        states = {"download": dvc_stage(stage="download")}
        # accepted corrections join the training pairs: featurize runs again only when the
        # export changed (nothing new accepted: the same bytes, and the run stays a no-op)
        feedback = export_feedback(PARAMS_FILE)
        states.update({stage: dvc_stage(stage=stage) for stage in STAGES[1:]})
        promotion = register_and_promote(PARAMS_FILE)
        if publish_results:
            verdict = "promoted" if promotion["promoted"] else "not promoted"
            line = f"model version {promotion['version']} {verdict}"
            print(f"published: {publish(PARAMS_FILE, f'Retrained: {line}')}")
        bento = package(PARAMS_FILE) if promotion["promoted"] and build_bento else None
        write_report(states, promotion, bento)
        return {"stages": states, "feedback": feedback, "promotion": promotion, "bento": bento}
    finally:
        lock.release()
