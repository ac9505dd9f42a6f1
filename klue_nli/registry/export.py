"""The champion as the service runs it: its model folder downloaded and checked whole, and
copied into the BentoML model store with the ONNX graph serving asks for.

    klue-nli export
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from klue_nli.core.errors import UserError
from klue_nli.core.params import Params
from klue_nli.inference.predictor import Predictor, graph_quantize
from klue_nli.registry.client import CHAMPION, alias_version, client


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
    and `bentoml build` use), labelled with the served runtime and precision evaluate
    measured it as (the service runs it so, and only so), with the ONNX graph they need; a
    no-op when the store's latest is that version and graph already."""
    from klue_nli.inference import bento  # BentoML loads slowly; only this command needs it

    name, c = params.registry.model_name, client()
    champion = alias_version(c, name, CHAMPION)
    if champion is None:
        raise UserError(f"{name}: no champion; run `make promote` first")
    # The run id too: "v1 of klue-nli" names a different model in every tracking store
    # (another clone, another server), and the BentoML store is per user, not per project.
    runtime, precision = (champion.tags.get(f"served.{k}") for k in ("runtime", "quantize"))
    if runtime is None or precision is None:
        raise UserError(
            f"{name} v{champion.version} records no served runtime and precision: run "
            "evaluate and `klue-nli register` again"
        )
    labels = {
        "registry_model": name,
        "registry_version": str(champion.version),
        "mlflow_run_id": champion.run_id,
        bento.SERVED_RUNTIME: runtime,
        bento.SERVED_QUANTIZE: precision,
    }
    # The ONNX graph the service runs, made once here rather than in every worker at start.
    quantize = graph_quantize(runtime, precision)
    if quantize is not None:
        from klue_nli.inference.onnx import GRAPH_FORMAT

        # the format too: a store exported by an earlier version is exported again
        labels["graph"] = f"onnx-{quantize}-v{GRAPH_FORMAT}"
    latest = bento.latest()
    if latest is not None and all(latest.info.labels.get(k) == v for k, v in labels.items()):
        return str(latest.tag)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, predictor = verified_model_dir(name, champion.version, Path(tmp))
        if quantize is not None:
            from klue_nli.inference.onnx import store_graph

            input_names = predictor.tokenizer.model_input_names
            store_graph(predictor.model, input_names, model_dir, quantize)
        metadata = {"mlflow_run_id": champion.run_id, **champion.tags}
        return bento.store_model(model_dir, labels, metadata)
