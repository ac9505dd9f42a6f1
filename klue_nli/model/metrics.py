"""Classification metrics and the two reference baselines evaluate reports next to the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.naive_bayes import MultinomialNB


def classification_report(
    gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], groups: Sequence[str]
) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix (rows gold) and per-group accuracy."""
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, labels=list(labels), zero_division=0
    )
    by_group = {}
    gold_arr, pred_arr, group_arr = np.asarray(gold), np.asarray(pred), np.asarray(groups)
    for group in sorted(set(groups)):
        mask = group_arr == group
        by_group[group] = {
            "accuracy": float(np.mean(gold_arr[mask] == pred_arr[mask])),
            "n": int(mask.sum()),
        }
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(gold, pred, labels=list(labels)).tolist(),
        "by_source": by_group,
        "n": len(gold),
    }


def majority_baseline(train_labels: Sequence[str], dev_labels: Sequence[str]) -> float:
    """Dev accuracy of always answering the most frequent training label."""
    majority, _ = Counter(train_labels).most_common(1)[0]
    return float(np.mean(np.asarray(dev_labels) == majority))


def hypothesis_only_baseline(
    tokenize: Callable[[str], list[str]],
    train_hypotheses: Sequence[str],
    train_labels: Sequence[str],
    dev_hypotheses: Sequence[str],
    dev_labels: Sequence[str],
) -> float:
    """Dev accuracy of naive Bayes over the hypothesis' word pieces alone: how much of the task
    annotation artefacts give away without reading the premise (Poliak et al., 2018)."""
    vectorizer = CountVectorizer(analyzer=tokenize)
    classifier = MultinomialNB().fit(vectorizer.fit_transform(train_hypotheses), train_labels)
    pred = classifier.predict(vectorizer.transform(dev_hypotheses))
    return float(np.mean(pred == np.asarray(dev_labels)))


def reliability_bins(probs: np.ndarray, gold: np.ndarray, bins: int) -> list[dict]:
    """The reliability diagram's points: the top probability split into `bins` equal-width
    bins over [0, 1]; per non-empty bin, its bounds, mean confidence, accuracy and pairs."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(gold)
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    points = []
    for i in range(bins):
        mask = index == i
        if mask.any():
            points.append(
                {
                    "lower": round(i / bins, 6),
                    "upper": round((i + 1) / bins, 6),
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "pairs": int(mask.sum()),
                }
            )
    return points


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int) -> float:
    """ECE: the pair-weighted mean gap between confidence and accuracy over equal-width bins
    of the top probability (Guo et al., 2017)."""
    return _ece(reliability_bins(probs, gold, bins))


def _ece(points: list[dict]) -> float:
    """ECE from reliability points (what expected_calibration_error and the figures share)."""
    n = sum(p["pairs"] for p in points)
    return float(sum(p["pairs"] * abs(p["accuracy"] - p["confidence"]) for p in points) / n)


def brier_score(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean over pairs of the squared distance between the probabilities and the one-hot
    gold label (summed over classes: 0 is perfect, 2 the worst)."""
    onehot = np.eye(probs.shape[1])[np.asarray(gold)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def risk_coverage(probs: np.ndarray, gold: np.ndarray, points: int = 100) -> list[dict]:
    """Accuracy of the answers kept when only the most confident are answered: at each
    coverage 1/points ... 1, the confidence threshold and the accuracy above it."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(gold)
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    curve = []
    for k in sorted({max(1, round(len(order) * i / points)) for i in range(1, points + 1)}):
        curve.append(
            {
                "coverage": round(k / len(order), 6),
                "accuracy": float(running[k - 1]),
                "threshold": float(confidence[order[k - 1]]),
            }
        )
    return curve


def selective(probs: np.ndarray, gold: np.ndarray, unsure: np.ndarray) -> dict:
    """The answers kept (not unsure): their share, and how often they are right."""
    kept = ~np.asarray(unsure)
    correct = probs.argmax(axis=1) == np.asarray(gold)
    return {
        "coverage": float(kept.mean()),
        "accuracy_kept": float(correct[kept].mean()) if kept.any() else None,
        "pairs": len(kept),
    }


def calibration_figures(before: np.ndarray, after: np.ndarray, gold: np.ndarray, bins: int) -> dict:
    """ECE, Brier score and reliability points of the same pairs' probabilities before and
    after temperature scaling."""
    points_before = reliability_bins(before, gold, bins)
    points = reliability_bins(after, gold, bins)
    return {
        "pairs": len(gold),
        "ece_before": _ece(points_before),
        "ece": _ece(points),
        "brier_before": brier_score(before, gold),
        "brier": brier_score(after, gold),
        "reliability_before": points_before,
        "reliability": points,
    }
