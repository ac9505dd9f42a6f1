"""Stage 4: evaluate the exported model on dev through the Predictor the service uses, score
KorNLI's XNLI test pairs as the out-of-domain figure, and run the behaviour suite
(klue_nli/model/behaviour.py) on it.

Writes DVC metrics and plots, and logs the same figures to the training stage's MLflow run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
from tqdm import tqdm

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json, atomic_write_text
from klue_nli.core.manifest import PROVENANCE_FILE, weights_sha256
from klue_nli.core.params import Params, flatten
from klue_nli.core.stage_runner import run_stage
from klue_nli.data import kornli
from klue_nli.data.klue import Example, clean_examples, read_split, split_filename
from klue_nli.inference import drift
from klue_nli.inference.predictor import Predictor, resolve_quantize
from klue_nli.model.behaviour import build_suite, run_suite
from klue_nli.model.metrics import (
    classification_report,
    hypothesis_only_baseline,
    majority_baseline,
)
from klue_nli.registry import tracking


def evaluate(params: Params) -> dict:
    """Predict dev, compute the report and baselines, write metrics and plots, log to MLflow."""
    model_dir = Path(params.paths.model_dir)
    predictor = Predictor.from_dir(model_dir)
    # The same text rule as featurize and the service: a pair they would refuse is counted.
    dev, dropped = clean_examples(read_split(params.paths.raw_dir, "dev"))
    probs, truncated = _predict(predictor, dev, params.evaluate.batch_size, "evaluate dev")
    preds = [predictor.labels[i] for i in probs.argmax(axis=1)]
    gold = [e.label for e in dev]
    report = classification_report(gold, preds, predictor.labels, [e.source for e in dev])
    report["data"] = _dev_data(params, dropped, truncated)
    # the model these figures belong to: register refuses them for any other
    report["model"] = {
        "mlflow_run_id": _run_id(model_dir),
        "weights_sha256": weights_sha256(model_dir),
    }
    report["behaviour"] = run_suite(predictor.predict_proba, predictor.labels, build_suite())
    report["out_of_domain"] = _out_of_domain(predictor, params)
    report["served"] = _as_served(predictor, params, dev, probs, gold)
    report["baselines"] = _baselines(predictor, params, dev)
    matrix = report.pop("confusion_matrix")
    _write(params, report, gold, preds)
    _log_to_mlflow(model_dir, report, matrix, predictor.labels)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "baselines": report["baselines"],
        "behaviour_pass": report["behaviour"]["overall"]["pass_rate"],
        "out_of_domain_accuracy": report["out_of_domain"]["accuracy"],
    }


def _dev_data(params: Params, dropped: int, truncated: int) -> dict:
    """What promotion checks before comparing two versions: the very same dev data."""
    dev_file = Path(params.paths.raw_dir) / split_filename("dev")
    return {
        "dev_sha256": hashlib.sha256(dev_file.read_bytes()).hexdigest(),
        "dropped": dropped,
        "truncated": truncated,
    }


def _as_served(
    predictor: Predictor, params: Params, dev: list[Example], probs: np.ndarray, gold: list[str]
) -> dict:
    """The model as the service runs it (serve.runtime, serve.quantize), on CPU as the
    service does (also when evaluate ran on a GPU), against PyTorch fp32; loaded and run
    again only when that is another model. The variant is recorded explicitly (`auto`
    resolved here), and the export labels the served model with it. Its dev profile (label
    shares, confidence) is what drift monitoring compares with."""
    serve = params.serve
    served, served_probs = predictor, probs
    quantize = resolve_quantize(serve.quantize, serve.runtime)  # `auto`: by this CPU
    if predictor.device != "cpu" or (serve.runtime, quantize) != ("torch", "none"):
        served = Predictor.from_dir(
            params.paths.model_dir, device="cpu", quantize=quantize, runtime=serve.runtime
        )
        served_probs = served.predict_proba(
            [e.premise for e in dev], [e.hypothesis for e in dev], params.evaluate.batch_size
        )
    labels = np.asarray(predictor.labels)
    served_preds, preds = labels[served_probs.argmax(axis=1)], labels[probs.argmax(axis=1)]
    return {
        "runtime": served.runtime,
        "quantize": served.quantize,  # as resolved here (serve.quantize auto: by this CPU)
        "accuracy": float(np.mean(served_preds == np.asarray(gold))),
        "argmax_agreement": float(np.mean(served_preds == preds)),
        "profile": drift.profile(served_probs, predictor.labels),
    }


def _baselines(predictor: Predictor, params: Params, dev: list[Example]) -> dict:
    train = read_split(params.paths.raw_dir, "train")
    gold = [e.label for e in dev]
    return {
        "majority": majority_baseline([e.label for e in train], gold),
        "hypothesis_only": hypothesis_only_baseline(
            predictor.tokenizer.tokenize,
            [e.hypothesis for e in train],
            [e.label for e in train],
            [e.hypothesis for e in dev],
            gold,
        ),
    }


def _write(params: Params, report: dict, gold: list[str], preds: list[str]) -> None:
    """eval.json (DVC metrics) and the confusion pairs (DVC plots)."""
    atomic_write_json(params.paths.eval_metrics, report)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows(zip(gold, preds, strict=True))
    atomic_write_text(params.paths.confusion, rows.getvalue())


def _predict(
    predictor: Predictor, examples: list[Example], batch_size: int, desc: str
) -> tuple[np.ndarray, int]:
    """The class probabilities (n, labels), and how many pairs were cut to the model's
    maximum length."""
    chunks: list[np.ndarray] = []
    truncated = 0
    for start in tqdm(range(0, len(examples), batch_size), desc=desc):
        batch = examples[start : start + batch_size]
        probs, cut = predictor.predict_proba_truncated(
            [e.premise for e in batch], [e.hypothesis for e in batch]
        )
        chunks.append(probs)
        truncated += int(cut.sum())
    return np.concatenate(chunks), truncated


def _out_of_domain(predictor: Predictor, params: Params) -> dict:
    """Accuracy and macro-F1 on KorNLI's XNLI test pairs (MultiNLI's genres, off KLUE's text).
    Reported only: no epoch, recipe or promotion is chosen on it."""
    pairs, _ = clean_examples(kornli.read_kornli(params.paths.raw_dir, "test"))
    pairs = pairs[: params.evaluate.out_of_domain_pairs]
    probs, _ = _predict(predictor, pairs, params.evaluate.batch_size, "evaluate out-of-domain")
    preds = [predictor.labels[i] for i in probs.argmax(axis=1)]
    scores = classification_report(
        [e.label for e in pairs], preds, predictor.labels, [e.source for e in pairs]
    )
    return {
        "dataset": kornli.kornli_filename("test"),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "n": scores["n"],
    }


def _run_id(model_dir: Path) -> str:
    try:
        return json.loads((model_dir / PROVENANCE_FILE).read_text())["mlflow_run_id"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        raise UserError(f"{model_dir}/{PROVENANCE_FILE}: no MLflow run id; rerun train") from None


def _log_to_mlflow(model_dir: Path, report: dict, matrix: list, labels: tuple[str, ...]) -> None:
    run_id = report["model"]["mlflow_run_id"]
    mlflow.set_tracking_uri(tracking.tracking_uri())
    numeric = {
        f"eval/{k}": v
        for k, v in flatten(report).items()
        if isinstance(v, int | float) and not k.endswith((".n", "support"))
    }
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(numeric)
        mlflow.log_dict(
            {**report, "confusion_matrix": matrix, "labels": list(labels)}, "eval/report.json"
        )


main = partial(run_stage, evaluate)  # the thin main(): params.yaml in, a summary or one error out

if __name__ == "__main__":
    main()
