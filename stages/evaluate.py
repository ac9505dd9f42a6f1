"""Stage 4: evaluate the exported model on dev through the Predictor the service uses, score
KorNLI's XNLI test pairs as the out-of-domain figure, and run the behaviour suite
(klue_nli/model/behaviour.py) on it. On both sets, how far the probabilities are from the
accuracy they claim (expected calibration error, Brier score, reliability diagram) before
and after the temperature train fitted on validation, and how the unsure threshold splits
the answers (risk-coverage curve on dev).

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
    calibration_figures,
    classification_report,
    expected_calibration_error,
    hypothesis_only_baseline,
    majority_baseline,
    risk_coverage,
    selective,
)
from klue_nli.network.calibration import softmax
from klue_nli.registry import tracking


def evaluate(params: Params) -> dict:
    """Predict dev, compute the report and baselines, write metrics and plots, log to MLflow."""
    model_dir = Path(params.paths.model_dir)
    predictor = Predictor.from_dir(model_dir)
    # The same text rule as featurize and the service: a pair they would refuse is counted.
    dev, dropped = clean_examples(read_split(params.paths.raw_dir, "dev"))
    logits, truncated = _predict(predictor, dev, params.evaluate.batch_size, "evaluate dev")
    probs = predictor.calibration.probabilities(logits)
    preds = [predictor.labels[i] for i in probs.argmax(axis=1)]
    gold = [e.label for e in dev]
    report = classification_report(gold, preds, predictor.labels, [e.source for e in dev])
    report["data"] = _dev_data(params, len(dev), dropped, truncated)
    # the model these figures belong to: register refuses them for any other
    report["model"] = {
        "mlflow_run_id": _run_id(model_dir),
        "weights_sha256": weights_sha256(model_dir),
    }
    report["behaviour"] = run_suite(predictor.predict_proba, predictor.labels, build_suite())
    report["out_of_domain"], *ood_data = _out_of_domain(predictor, params)
    report.update(_confidence(predictor, params.calibration.bins, (logits, gold), ood_data))
    report["served"] = _as_served(predictor, params, dev, probs, gold)
    report["baselines"] = _baselines(predictor, params, dev)
    matrix = report.pop("confusion_matrix")
    _write(params, report, gold, preds)
    _write_curves(params, report["calibration"], risk_coverage(probs, _ids(predictor, gold)))
    _log_to_mlflow(model_dir, report, matrix, predictor.labels)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "baselines": report["baselines"],
        "behaviour_pass": report["behaviour"]["overall"]["pass_rate"],
        "out_of_domain_accuracy": report["out_of_domain"]["accuracy"],
        "dev_ece_before_scaling": report["calibration"]["dev"]["ece_before"],
        "dev_ece": report["calibration"]["dev"]["ece"],
        "dev_answered_share": report["unsure"]["dev"]["coverage"],
    }


def _dev_data(params: Params, pairs: int, dropped: int, truncated: int) -> dict:
    """What promotion checks before comparing two versions: the very same dev data (and what
    a figure is on: the offline mirror's dev file is 2,400 of the official 3,000 pairs)."""
    dev_file = Path(params.paths.raw_dir) / split_filename("dev")
    content = dev_file.read_bytes()
    return {
        "dev_sha256": hashlib.sha256(content).hexdigest(),
        "dev_bytes": len(content),
        "dev_pairs": pairs + dropped,
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
    served, served_probs = predictor, probs  # calibrated
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
    unsure = served.unsure(served_probs)
    return {
        "runtime": served.runtime,
        "quantize": served.quantize,  # as resolved here (serve.quantize auto: by this CPU)
        "accuracy": float(np.mean(served_preds == np.asarray(gold))),
        "argmax_agreement": float(np.mean(served_preds == preds)),
        # the probabilities the service shows, calibrated (the promotion gate reads it)
        "ece": expected_calibration_error(
            served_probs, _ids(predictor, gold), params.calibration.bins
        ),
        "profile": drift.profile(served_probs, predictor.labels, unsure),
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
    """The model's raw logits (n, labels), and how many pairs were cut to the model's
    maximum length."""
    chunks: list[np.ndarray] = []
    truncated = 0
    for start in tqdm(range(0, len(examples), batch_size), desc=desc):
        batch = examples[start : start + batch_size]
        logits, cut = predictor.logits_truncated(
            [e.premise for e in batch], [e.hypothesis for e in batch]
        )
        chunks.append(logits)
        truncated += int(cut.sum())
    return np.concatenate(chunks), truncated


def _out_of_domain(predictor: Predictor, params: Params) -> tuple[dict, np.ndarray, list[str]]:
    """Accuracy and macro-F1 on KorNLI's XNLI test pairs (MultiNLI's genres, off KLUE's text),
    with the pairs' logits and gold labels. Reported only: no epoch, recipe or promotion is
    chosen on it."""
    pairs, _ = clean_examples(kornli.read_kornli(params.paths.raw_dir, "test"))
    pairs = pairs[: params.evaluate.out_of_domain_pairs]
    logits, _ = _predict(predictor, pairs, params.evaluate.batch_size, "evaluate out-of-domain")
    preds = [predictor.labels[i] for i in logits.argmax(axis=1)]
    gold = [e.label for e in pairs]
    scores = classification_report(gold, preds, predictor.labels, [e.source for e in pairs])
    figures = {
        "dataset": kornli.kornli_filename("test"),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "n": scores["n"],
    }
    return figures, logits, gold


def _ids(predictor: Predictor, gold: list[str]) -> np.ndarray:
    return np.asarray([predictor.labels.index(label) for label in gold])


def _confidence(predictor: Predictor, bins: int, dev: tuple, ood: tuple) -> dict:
    """`calibration` (ECE, Brier score, reliability before and after scaling) and `unsure`
    (the answers the threshold keeps) on dev and out of domain, each (logits, gold)."""
    return {
        "calibration": {
            "binning": f"{bins} equal-width bins of the top probability",
            **_calibration_fit(predictor),
            "dev": _calibration(predictor, *dev, bins),
            "out_of_domain": _calibration(predictor, *ood, bins),
        },
        "unsure": {
            "below": predictor.calibration.unsure_below,
            "target_accuracy": predictor.calibration.target_accuracy,
            "target_met": predictor.calibration.target_met,
            "dev": _selective(predictor, *dev),
            "out_of_domain": _selective(predictor, *ood),
        },
    }


def _calibration_fit(predictor: Predictor) -> dict:
    """What train fitted on validation (the model folder's calibration.json)."""
    fit = predictor.calibration
    return {
        "temperature": fit.temperature,
        "fitted_on": "validation",
        "validation_pairs": fit.pairs,
        "validation_nll_before": fit.nll_before,
        "validation_nll": fit.nll_after,
    }


def _calibration(predictor: Predictor, logits: np.ndarray, gold: list[str], bins: int) -> dict:
    """ECE, Brier score and reliability points before scaling (T = 1) and after (the fitted
    T): the argmax, and so the answers, are the same."""
    before, after = softmax(logits), predictor.calibration.probabilities(logits)
    return calibration_figures(before, after, _ids(predictor, gold), bins)


def _selective(predictor: Predictor, logits: np.ndarray, gold: list[str]) -> dict:
    """How the unsure threshold splits the answers: the share kept and their accuracy."""
    probs = predictor.calibration.probabilities(logits)
    return selective(probs, _ids(predictor, gold), predictor.unsure(probs))


def _write_curves(params: Params, calibration: dict, coverage: list[dict]) -> None:
    """The reliability diagrams (one file a curve) and the dev risk-coverage curve: DVC plots."""
    folder = Path(params.paths.reliability)
    for split in ("dev", "out_of_domain"):
        for when, key in (("before", "reliability_before"), ("after", "reliability")):
            _write_csv(folder / f"{split}_{when}_scaling.csv", calibration[split][key])
    _write_csv(Path(params.paths.risk_coverage), coverage)


def _write_csv(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


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
