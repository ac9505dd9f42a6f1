"""Drift of the served answers: the served model's predicted-label shares and confidence,
against what the same model gave on KLUE dev, by the population stability index (PSI).

PSI = sum over bins of (p - q) * ln(p / q), p the served shares, q the reference's (each
bin floored at EPSILON so an empty bin is finite). By the usual reading, under 0.1 the
populations are alike, 0.1 to 0.25 they moved, over 0.25 they differ: `THRESHOLD` is 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# upper bounds of the confidence bins (the predicted label's probability; 3 labels: >= 1/3)
CONFIDENCE_BUCKETS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
THRESHOLD = 0.2
EPSILON = 1e-4


def psi(served: Sequence[float], reference: Sequence[float]) -> float:
    """The population stability index of two histograms over the same bins (counts or
    shares; each is normalised here)."""
    p = _shares(served)
    q = _shares(reference)
    return float(np.sum((p - q) * np.log(p / q)))


def _shares(counts: Sequence[float]) -> np.ndarray:
    values = np.asarray(counts, dtype=float)
    total = values.sum()
    if total <= 0:
        raise ValueError("a histogram with no counts")
    return np.maximum(values / total, EPSILON)


def confidence_histogram(confidences: Sequence[float]) -> list[int]:
    """Counts per CONFIDENCE_BUCKETS bin (each bin holds values up to its bound)."""
    edges = np.asarray(CONFIDENCE_BUCKETS)
    index = np.searchsorted(edges, np.asarray(confidences, dtype=float), side="left")
    return np.bincount(np.minimum(index, len(edges) - 1), minlength=len(edges)).tolist()


def profile(probabilities: np.ndarray, labels: Sequence[str], unsure: np.ndarray) -> dict:
    """What drift is measured against: a model's predicted-label shares, confidence
    histogram and share of unsure answers on a set of pairs (evaluate records it for dev, as
    served)."""
    predicted = probabilities.argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(labels))
    return {
        "pairs": len(predicted),
        "label_shares": {
            label: float(c / len(predicted)) for label, c in zip(labels, counts, strict=True)
        },
        "confidence_buckets": list(CONFIDENCE_BUCKETS),
        "confidence_counts": confidence_histogram(probabilities.max(axis=1)),
        "unsure_share": float(np.mean(unsure)),
    }


def compare(
    label_counts: Mapping[str, float],
    confidence_counts: Sequence[float],
    unsure: float,
    reference: Mapping,
    threshold: float = THRESHOLD,
) -> dict:
    """The served answers' PSI against `reference` (a profile), for the labels, the
    confidence and the unsure share (`unsure` of the answers were); drift when any is over
    `threshold`."""
    labels = list(reference["label_shares"])
    label_psi = psi(
        [label_counts.get(label, 0.0) for label in labels],
        [reference["label_shares"][label] for label in labels],
    )
    confidence_psi = psi(confidence_counts, reference["confidence_counts"])
    answers = sum(label_counts.values())
    share = reference["unsure_share"]
    unsure_psi = psi([unsure, answers - unsure], [share, 1.0 - share])
    served_shares = {label: label_counts.get(label, 0.0) / answers for label in labels}
    return {
        "answers": int(answers),
        "label_psi": round(label_psi, 4),
        "confidence_psi": round(confidence_psi, 4),
        "unsure_psi": round(unsure_psi, 4),
        "threshold": threshold,
        "drift": bool(
            max(label_psi, confidence_psi, unsure_psi) > threshold or math.isnan(label_psi)
        ),
        "served_unsure_share": round(unsure / answers, 4),
        "reference_unsure_share": round(share, 4),
        "served_label_shares": {k: round(v, 4) for k, v in served_shares.items()},
        "reference_label_shares": {k: round(v, 4) for k, v in reference["label_shares"].items()},
    }
