"""The evaluation report against scikit-learn's own functions and hand-counted values."""

from __future__ import annotations

import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from klue_nli.metrics import classification_report

LABELS = ("entailment", "contradiction", "neutral")
GOLD = ["entailment"] * 4 + ["contradiction"] * 3 + ["neutral"] * 3
PRED = [
    "entailment", "entailment", "neutral", "contradiction",
    "contradiction", "contradiction", "entailment",
    "neutral", "entailment", "neutral",
]  # fmt: skip
GROUPS = ["NSMC"] * 5 + ["wikipedia"] * 5


def test_report_equals_scikit_learn_and_hand_counts():
    report = classification_report(GOLD, PRED, LABELS, GROUPS)
    assert report["accuracy"] == pytest.approx(accuracy_score(GOLD, PRED)) == 0.6
    assert report["macro_f1"] == pytest.approx(f1_score(GOLD, PRED, average="macro"))
    precision, recall, f1, support = precision_recall_fscore_support(GOLD, PRED, labels=LABELS)
    for i, label in enumerate(LABELS):
        got = report["per_class"][label]
        assert got["precision"] == pytest.approx(precision[i])
        assert got["recall"] == pytest.approx(recall[i])
        assert got["f1"] == pytest.approx(f1[i])
        assert got["support"] == support[i]
    # entailment: 2 of 4 found, 2 of 4 "entailment" answers right
    assert report["per_class"]["entailment"]["recall"] == 0.5
    assert report["per_class"]["entailment"]["precision"] == 0.5
    assert report["confusion_matrix"] == confusion_matrix(GOLD, PRED, labels=LABELS).tolist()
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [1, 0, 2]]  # rows: gold
    assert report["by_source"] == {
        "NSMC": {"accuracy": 0.6, "n": 5},  # 2 + 1 right of 5
        "wikipedia": {"accuracy": 0.6, "n": 5},
    }
    assert report["n"] == 10


def test_a_class_never_predicted_scores_zero_not_an_error():
    gold = ["entailment", "neutral", "contradiction"]
    pred = ["entailment", "entailment", "entailment"]
    report = classification_report(gold, pred, LABELS, ["x"] * 3)
    assert report["per_class"]["neutral"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    assert report["macro_f1"] == pytest.approx(
        f1_score(gold, pred, average="macro", zero_division=0)
    )
