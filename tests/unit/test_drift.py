"""Drift arithmetic (klue_nli/inference/drift.py) and reading the service's metrics
(klue_nli/monitoring/drift_check.py) from a page prometheus_client itself writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from klue_nli.inference.drift import (
    CONFIDENCE_BUCKETS,
    THRESHOLD,
    compare,
    confidence_histogram,
    profile,
    psi,
)
from klue_nli.monitoring.drift_check import served_counts, since

LABELS = ("entailment", "contradiction", "neutral")


def test_psi_by_hand():
    # (0.5-0.25)ln(2) + (0.25-0.5)ln(0.5) + 0 = 0.5 ln 2
    assert psi([50, 25, 25], [25, 50, 25]) == pytest.approx(0.5 * math.log(2))
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0)
    assert math.isfinite(psi([10, 0, 0], [1, 1, 1]))  # an empty bin is floored, not infinite
    with pytest.raises(ValueError):
        psi([0, 0, 0], [1, 1, 1])


def test_confidence_bins_hold_values_up_to_their_bound():
    assert confidence_histogram([0.35, 0.4, 0.41, 0.95, 0.999, 1.0]) == [2, 1, 0, 0, 0, 0, 1, 0, 2]
    assert len(confidence_histogram([0.5])) == len(CONFIDENCE_BUCKETS)


def test_the_same_stream_is_no_drift_and_a_shifted_one_is():
    rng = np.random.default_rng(0)
    dev = rng.dirichlet([2, 2, 2], size=2000)
    reference = profile(dev, LABELS, dev.max(axis=1) < UNSURE_BELOW)
    assert sum(reference["confidence_counts"]) == 2000
    assert sum(reference["label_shares"].values()) == pytest.approx(1.0)
    assert 0.2 < reference["unsure_share"] < 0.8

    alike = rng.dirichlet([2, 2, 2], size=1000)
    verdict = compare(*counts(alike), reference)
    assert not verdict["drift"] and verdict["label_psi"] < 0.05, verdict
    assert verdict["unsure_psi"] < 0.05, verdict
    # a stream the model is sure of and calls entailment: every figure moves
    shifted = rng.dirichlet([20, 1, 1], size=1000)
    verdict = compare(*counts(shifted), reference)
    assert verdict["drift"] and verdict["label_psi"] > THRESHOLD, verdict
    assert verdict["confidence_psi"] > THRESHOLD and verdict["answers"] == 1000
    assert verdict["unsure_psi"] > THRESHOLD and verdict["served_unsure_share"] < 0.05


UNSURE_BELOW = 0.55


def counts(probs: np.ndarray) -> tuple[dict, list[int], float]:
    labels = probs.argmax(axis=1)
    by_label = {LABELS[i]: float((labels == i).sum()) for i in range(3)}
    unsure = float((probs.max(axis=1) < UNSURE_BELOW).sum())
    return by_label, confidence_histogram(probs.max(axis=1)), unsure


def test_a_rise_of_unsure_answers_alone_is_drift():
    """Labels and the confidence histogram alike, but three times as many answers below the
    unsure threshold (the threshold inside one confidence bin): only the unsure share tells."""
    reference = {
        "label_shares": dict.fromkeys(LABELS, 1 / 3),
        "confidence_counts": [100, 100, 100, 100, 100, 100, 100, 100, 100],
        "unsure_share": 0.1,
    }
    served = compare(dict.fromkeys(LABELS, 300.0), [100] * 9, 270.0, reference)
    assert served["label_psi"] == 0 and served["confidence_psi"] == 0
    assert served["unsure_psi"] > THRESHOLD and served["drift"], served


def metrics_page(
    answers: dict[str, int], confidences: list[float], version: str, unsure: int = 0
) -> str:
    """A /metrics page as the service's metrics write it (same names and labels)."""
    registry = CollectorRegistry()
    counter = Counter("klue_nli_answers", "a", ["model_version", "label"], registry=registry)
    doubts = Counter("klue_nli_unsure_answers", "u", ["model_version"], registry=registry)
    doubts.labels(model_version=version).inc(unsure)
    doubts.labels(model_version="other").inc(500)
    hist = Histogram(
        "klue_nli_answer_confidence",
        "c",
        ["model_version"],
        buckets=CONFIDENCE_BUCKETS,
        registry=registry,
    )
    for label, n in answers.items():
        counter.labels(model_version=version, label=label).inc(n)
        counter.labels(model_version="other", label=label).inc(1000)  # another version's
    for c in confidences:
        hist.labels(model_version=version).observe(c)
    return generate_latest(registry).decode()


def test_served_counts_read_one_versions_answers_per_bin():
    page = metrics_page({"entailment": 3, "neutral": 1}, [0.35, 0.45, 0.97, 0.97], "7", 2)
    counts = served_counts(page, "7")
    assert counts["labels"] == {"entailment": 3.0, "neutral": 1.0}
    assert counts["confidence"] == [1.0, 1.0, 0, 0, 0, 0, 0, 2.0, 0]
    assert counts["unsure"] == 2.0


def test_the_window_is_what_came_since_the_last_check_or_all_after_a_restart():
    before = {"labels": {"entailment": 5.0}, "confidence": [1.0, 4.0], "unsure": 1.0}
    now = {"labels": {"entailment": 8.0, "neutral": 2.0}, "confidence": [2.0, 8.0], "unsure": 4.0}
    assert since(now, before) == {
        "labels": {"entailment": 3.0, "neutral": 2.0},
        "confidence": [1.0, 4.0],
        "unsure": 3.0,
    }
    restarted = {"labels": {"entailment": 2.0}, "confidence": [0.0, 2.0], "unsure": 0.0}
    assert since(restarted, before) == restarted
    assert since(now, None) == now
    # a service restarted since, that has already answered more than before: told by its
    # start time, not by a count going down
    started = {**before, "started": 1000.0}
    busier = {
        "labels": {"entailment": 9.0},
        "confidence": [3.0, 6.0],
        "unsure": 2.0,
        "started": 2000.0,
    }
    assert since(busier, started) == busier
    same_run = {**busier, "started": 1000.0}
    assert since(same_run, started)["labels"] == {"entailment": 4.0}
