"""MLflow model registry: register the evaluated model, promote it by policy, roll back.

Aliases, not the deprecated stages: `champion` is what is served, `previous` the champion it
replaced (so `rollback` is one command). Every decision and its reasons are written on the
candidate version as tags. Promotions on one machine are serialised by a file lock, so two
racing promotions leave exactly one champion.

    klue-nli register | promote | rollback | show | export | gc
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import PROVENANCE_FILE, weights_sha256
from klue_nli.core.params import Params, RegistryParams
from klue_nli.inference.predictor import Predictor
from klue_nli.registry.client import (
    CHAMPION,
    PREVIOUS,
    alias_version,
    client,
    get_version,
    registry_lock,
    version_metrics,
)
from klue_nli.registry.model_card import policy_card, version_card
from klue_nli.registry.policy import Decision, decide

DEV_DATA_TAG = "data.dev_sha256"  # the dev file a version was evaluated on
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
        **{f"eval.served.{k}": served[k] for k in ("accuracy", "argmax_agreement") if k in served},
        **{f"served.{k}": served[k] for k in ("runtime", "quantize") if k in served},
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


def promote(params: Params, version: str | None = None) -> tuple[ModelVersion, Decision]:
    """Apply the policy to `version` (default: the newest) and move the aliases if it holds."""
    name, c = params.registry.model_name, client()
    with registry_lock(name):
        candidate = get_version(c, name, version)
        champion = alias_version(c, name, CHAMPION)
        if champion is not None and champion.version == candidate.version:
            if "promotion.decision" in candidate.tags:
                return candidate, Decision(
                    False, [f"version {candidate.version} is champion already"]
                )
            # a promotion stopped after moving the alias: finish writing its record
            decision = Decision(True, ["completed an interrupted promotion"])
            _record(c, name, candidate.version, decision, alias_version(c, name, PREVIOUS))
            return c.get_model_version(name, candidate.version), decision
        if champion is not None:
            _require_same_dev_data(name, candidate, champion)
        decision = decide(
            version_metrics(candidate),
            version_metrics(champion) if champion else None,
            params.registry,
        )
        if decision.promote:
            try:  # never promote what could not be served
                with tempfile.TemporaryDirectory() as tmp:
                    verified_model_dir(name, candidate.version, Path(tmp))
            except UserError as exc:
                refusal = Decision(False, [str(exc)])
                _record(c, name, candidate.version, refusal, champion, verdict="refused")
                raise UserError(f"{name} v{candidate.version}: not promoted: {exc}") from None
            # previous first: a crash between the two calls still leaves one champion
            if champion is not None:
                c.set_registered_model_alias(name, PREVIOUS, champion.version)
            c.set_registered_model_alias(name, CHAMPION, candidate.version)
        _record(c, name, candidate.version, decision, champion)
    return c.get_model_version(name, candidate.version), decision


def _require_same_dev_data(name: str, candidate: ModelVersion, champion: ModelVersion) -> None:
    """Accuracies measured on different dev files say nothing about which model is better."""
    ours, theirs = (v.tags.get(DEV_DATA_TAG, "unknown") for v in (candidate, champion))
    if "unknown" not in (ours, theirs) and ours != theirs:
        raise UserError(
            f"{name} v{candidate.version}: not compared with champion v{champion.version}: "
            f"they were evaluated on different dev data (sha256 {ours[:12]}… vs "
            f"{theirs[:12]}…); evaluate both on the same dev file"
        )


def _record(
    c: MlflowClient,
    name: str,
    version: str,
    decision: Decision,
    champion: ModelVersion | None,
    verdict: str | None = None,
) -> None:
    """Write the decision on the version; `verdict` overrides promoted/rejected ("refused":
    the artifact failed its checks). The decision tag goes last: its presence means the
    record is complete."""
    verdict = verdict or ("promoted" if decision.promote else "rejected")
    for key, value in {
        "promotion.reasons": "; ".join(decision.reasons),
        "promotion.compared_to": champion.version if champion else "none",
        "promotion.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "promotion.decision": verdict,
    }.items():
        c.set_model_version_tag(name, version, key, value)


def rollback(params: Params) -> ModelVersion:
    """Make `previous` the champion again; the demoted version is tagged rolled_back."""
    name, c = params.registry.model_name, client()
    with registry_lock(name):
        previous = alias_version(c, name, PREVIOUS)
        champion = alias_version(c, name, CHAMPION)
        if previous is None:
            raise UserError(f"{name}: no '{PREVIOUS}' version to roll back to")
        c.set_registered_model_alias(name, CHAMPION, previous.version)
        c.delete_registered_model_alias(name, PREVIOUS)
        if champion is not None:
            c.set_model_version_tag(name, champion.version, "rolled_back", "true")
    return c.get_model_version(name, previous.version)


def verified_model_dir(name: str, version: str, dst: Path) -> tuple[Path, Predictor]:
    """Download a version's model folder into `dst` (always a copy, never the store) and
    check it whole: every file against its checksum, and that it loads (its PyTorch
    predictor)."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=dst))
        flavor = Model.load(local / "MLmodel").flavors["python_function"]
        model_dir = local / flavor["artifacts"]["model_dir"]["path"]
    except (MlflowException, OSError, KeyError) as exc:
        problem = f"the model artifact is missing or unreadable ({exc})"
        raise UserError(f"{name} v{version}: {problem}") from None
    predictor = Predictor.from_dir(model_dir, device="cpu", require_manifest=True)
    return model_dir, predictor


def export_champion(params: Params) -> str:
    """Copy the champion's model folder into the BentoML model store (what `bentoml serve`
    and `bentoml build` use), with the ONNX graph `serve.runtime` and `serve.quantize` ask
    for; a no-op when the store's latest is that version and graph already."""
    from klue_nli.inference import bento  # BentoML loads slowly; only this command needs it

    name, c = params.registry.model_name, client()
    champion = alias_version(c, name, CHAMPION)
    if champion is None:
        raise UserError(f"{name}: no champion; run `make promote` first")
    # The run id too: "v1 of klue-nli" names a different model in every tracking store
    # (another clone, another server), and the BentoML store is per user, not per project.
    labels = {
        "registry_model": name,
        "registry_version": str(champion.version),
        "mlflow_run_id": champion.run_id,
    }
    serve = params.serve
    # The ONNX graph the service runs, made once here rather than in every worker at start.
    if serve.runtime == "onnxruntime":
        from klue_nli.inference.onnx import GRAPH_FORMAT

        # the format too: a store exported by an earlier version is exported again
        labels["graph"] = f"onnx-{serve.quantize}-v{GRAPH_FORMAT}"
    latest = bento.latest()
    if latest is not None and all(latest.info.labels.get(k) == v for k, v in labels.items()):
        return str(latest.tag)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, predictor = verified_model_dir(name, champion.version, Path(tmp))
        if serve.runtime == "onnxruntime":
            from klue_nli.inference.onnx import store_graph

            input_names = predictor.tokenizer.model_input_names
            store_graph(predictor.model, input_names, model_dir, serve.quantize)
        metadata = {"mlflow_run_id": champion.run_id, **champion.tags}
        return bento.store_model(model_dir, labels, metadata)


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows
    )


def comparison(candidate: ModelVersion, champion: ModelVersion | None) -> str:
    cand = version_metrics(candidate)
    champ = version_metrics(champion) if champion else {}
    rows = [
        (
            "metric",
            f"candidate v{candidate.version}",
            f"champion v{champion.version}" if champion else "champion (none)",
        )
    ]
    for key in sorted(cand):
        rows.append((key, f"{cand[key]:.4f}", f"{champ[key]:.4f}" if key in champ else "-"))
    return table(rows)
