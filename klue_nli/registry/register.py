"""Register the evaluated model: one MLflow model version per trained model, with its
evaluation as tags and its model card as the description.

    klue-nli register
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import PROVENANCE_FILE, weights_sha256
from klue_nli.core.params import Params, RegistryParams
from klue_nli.registry.client import client
from klue_nli.registry.model_card import policy_card, version_card

DEV_DATA_TAG = "data.dev_sha256"  # the dev file a version was evaluated on
# the served model's label shares and confidence on dev (JSON): what drift is measured against
PROFILE_TAG = "served.dev_profile"
LINEAGE_PARAMS = ("model", "train", "featurize", "seed", "labels")


def register(params: Params) -> ModelVersion:
    """Register the model of the last pipeline run (paths.model_dir, paths.eval_metrics),
    refusing metrics that scored another model (a train without evaluate since)."""
    paths = params.paths
    model_dir = Path(paths.model_dir)
    try:
        provenance = json.loads((model_dir / PROVENANCE_FILE).read_text())
        report = json.loads(Path(paths.eval_metrics).read_text())
    except FileNotFoundError as exc:
        raise UserError(f"{exc.filename}: missing; run the pipeline first (dvc repro)") from None
    scored = report.get("model", {})
    here = {
        "mlflow_run_id": provenance.get("mlflow_run_id"),
        "weights_sha256": weights_sha256(model_dir),
    }
    if scored != here:
        raise UserError(
            f"{paths.eval_metrics} scored run {scored.get('mlflow_run_id')} (weights "
            f"{str(scored.get('weights_sha256'))[:12]}), not the model in {model_dir} (run "
            f"{here['mlflow_run_id']}, weights {here['weights_sha256'][:12]}); rerun evaluate "
            "(dvc repro)"
        )
    return register_run(params.registry.model_name, provenance, report, params.registry)


def eval_tags(report: dict) -> dict[str, float | str]:
    """What a version records of its evaluation: `eval.*` (numbers the policy reads) and
    the served configuration and dev data it was measured with."""
    served = report.get("served", {})
    return {
        "eval.accuracy": report["accuracy"],
        "eval.macro_f1": report["macro_f1"],
        **{f"eval.f1.{label}": m["f1"] for label, m in report["per_class"].items()},
        **(
            {"eval.behaviour_pass": report["behaviour"]["overall"]["pass_rate"]}
            if "behaviour" in report
            else {}
        ),
        **{
            f"eval.served.{k}": served[k]
            for k in ("accuracy", "argmax_agreement", "ece")
            if k in served
        },
        **{f"served.{k}": served[k] for k in ("runtime", "quantize") if k in served},
        **({PROFILE_TAG: json.dumps(served["profile"])} if "profile" in served else {}),
        DEV_DATA_TAG: report.get("data", {}).get("dev_sha256", "unknown"),
        **{f"baseline.{k}": v for k, v in report.get("baselines", {}).items()},
    }


def register_run(name: str, provenance: dict, report: dict, policy: RegistryParams) -> ModelVersion:
    """Register the model logged by provenance's MLflow run, with the eval metrics and the
    lineage (git commit, DVC hashes, params) as version tags. Idempotent per run; a run
    registered already gets its evaluation tags refreshed when evaluate has run again."""
    run_id = provenance["mlflow_run_id"]
    c = client()
    existing = c.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        version = existing[0]
        stale = {k: str(v) for k, v in eval_tags(report).items() if version.tags.get(k) != str(v)}
        for key, value in stale.items():
            c.set_model_version_tag(name, version.version, key, value)
        if stale:
            run_params = c.get_run(run_id).data.params
            c.update_model_version(
                name, version.version, version_card(provenance, report, run_params)
            )
        return c.get_model_version(name, version.version)
    tags = {
        **eval_tags(report),
        "git_commit": provenance.get("git_commit", "unknown"),
        **{k: v for k, v in provenance.items() if k.startswith("dvc.")},
    }
    run = c.get_run(run_id)
    run_params = run.data.params
    tags.update(
        {f"params.{k}": v for k, v in run_params.items() if k.split(".")[0] in LINEAGE_PARAMS}
    )
    logged = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )
    if not logged:
        raise UserError(f"run {run_id} logged no model; rerun the train stage")
    try:
        version = mlflow.register_model(
            f"models:/{logged[0].model_id}", name, tags={k: str(v) for k, v in tags.items()}
        )
    except MlflowException as exc:
        raise UserError(f"cannot register run {run_id}: {exc.message}") from None
    # what a person reads in the MLflow UI: the version's model card, the model's policy
    c.update_model_version(name, version.version, version_card(provenance, report, run_params))
    c.update_registered_model(name, policy_card(name, policy))
    return c.get_model_version(name, version.version)
