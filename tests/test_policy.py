"""The promotion policy, a pure function: unit tests on inline metrics."""

from __future__ import annotations

import pytest

from klue_nli.params import RegistryParams
from klue_nli.policy import decide

LABELS = ("entailment", "contradiction", "neutral")


def metrics(acc: float, f1: float | None = None, **per_class: float) -> dict:
    f1s = {label: per_class.get(label, f1 if f1 is not None else acc) for label in LABELS}
    return {"accuracy": acc, **{f"f1.{k}": v for k, v in f1s.items()}}


def test_first_model_becomes_champion():
    assert decide(metrics(0.4), None, RegistryParams()).promote


@pytest.mark.parametrize(
    ("candidate", "champion", "policy", "promote"),
    [
        (metrics(0.70), metrics(0.60), RegistryParams(), True),
        (metrics(0.59), metrics(0.60), RegistryParams(), False),
        (metrics(0.60), metrics(0.60), RegistryParams(), True),  # ties pass at margin 0
        (metrics(0.61), metrics(0.60), RegistryParams(min_accuracy_gain=0.02), False),
        (metrics(0.63), metrics(0.60), RegistryParams(min_accuracy_gain=0.02), True),
        # better overall but one class collapsed: refused
        (metrics(0.70, neutral=0.40), metrics(0.60), RegistryParams(max_f1_drop=0.05), False),
    ],
)
def test_policy(candidate, champion, policy, promote):
    decision = decide(candidate, champion, policy)
    assert decision.promote is promote
    assert decision.reasons


@pytest.mark.parametrize(
    ("rate", "floor", "promote"),
    [(0.5, None, True), (0.5, 0.6, False), (0.6, 0.6, True), (None, 0.1, False)],
)
def test_policy_minimum_behaviour_pass_rate(rate, floor, promote):
    """Off by default; when set, it holds for a first model too, and a version without a
    recorded rate fails it."""
    candidate = metrics(0.7) | ({} if rate is None else {"behaviour_pass": rate})
    policy = RegistryParams(min_behaviour_pass=floor)
    assert decide(candidate, None, policy).promote is promote
    assert decide(candidate, metrics(0.6), policy).promote is promote
