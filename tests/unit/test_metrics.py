"""The evaluation report against values counted by hand."""

from __future__ import annotations

import pytest

from klue_nli.model.metrics import classification_report

LABELS = ("entailment", "contradiction", "neutral")
GOLD = ["entailment"] * 4 + ["contradiction"] * 3 + ["neutral"] * 3
PRED = [
    "entailment", "entailment", "neutral", "contradiction",
    "contradiction", "contradiction", "entailment",
    "neutral", "entailment", "neutral",
]  # fmt: skip
GROUPS = ["NSMC"] * 5 + ["wikipedia"] * 5


def test_report_equals_hand_counts():
    """Counted by hand from GOLD and PRED (rows gold, columns predicted):
    entailment [2, 1, 1], contradiction [1, 2, 0], neutral [1, 0, 2]. Not compared with the
    scikit-learn call klue_nli/model/metrics.py itself makes: that could not disagree."""
    report = classification_report(GOLD, PRED, LABELS, GROUPS)
    assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [1, 0, 2]]
    assert report["accuracy"] == pytest.approx(0.6)  # 6 of 10 on the diagonal
    # entailment: 2 right of 4 gold, 2 right of 4 predicted (2 + 1 + 1 in its column)
    assert report["per_class"]["entailment"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    )
    # contradiction: 2 of 3 gold, 2 of 3 predicted (1 + 2 + 0); neutral likewise (1 + 0 + 2)
    for label in ("contradiction", "neutral"):
        assert report["per_class"][label] == pytest.approx(
            {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
        )
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
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
    # entailment: 1 right of 1 gold, of 3 predicted -> F1 2 * (1/3 * 1) / (1/3 + 1) = 0.5
    assert report["per_class"]["entailment"]["f1"] == pytest.approx(0.5)
    assert report["macro_f1"] == pytest.approx(0.5 / 3)
