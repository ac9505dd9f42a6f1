"""The promotion policy, a pure function: unit tests on inline metrics."""

from __future__ import annotations

import pytest

from klue_nli.core.params import RegistryParams
from klue_nli.registry.model_card import policy_card
from klue_nli.registry.policy import decide, rules
from tests.conftest import default_params

LABELS = ("entailment", "contradiction", "neutral")


def policy(**changes: object) -> RegistryParams:
    """params.yaml's promotion policy with `changes`."""
    return default_params(registry=changes).registry


def metrics(acc: float, f1: float | None = None, **per_class: float) -> dict:
    f1s = {label: per_class.get(label, f1 if f1 is not None else acc) for label in LABELS}
    return {"accuracy": acc, **{f"f1.{k}": v for k, v in f1s.items()}}


def test_first_model_becomes_champion():
    assert decide(metrics(0.4), None, policy()).promote


@pytest.mark.parametrize(
    ("candidate", "champion", "policy", "promote"),
    [
        (metrics(0.70), metrics(0.60), policy(), True),
        (metrics(0.59), metrics(0.60), policy(), False),
        (metrics(0.60), metrics(0.60), policy(), False),  # a tie keeps the champion
        (metrics(0.61), metrics(0.60), policy(min_accuracy_gain=0.02), False),
        (metrics(0.63), metrics(0.60), policy(min_accuracy_gain=0.02), True),
        # better overall but one class collapsed: refused
        (metrics(0.70, neutral=0.40), metrics(0.60), policy(max_f1_drop=0.05), False),
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
    floored = policy(min_behaviour_pass=floor)
    assert decide(candidate, None, floored).promote is promote
    assert decide(candidate, metrics(0.6), floored).promote is promote


def test_a_tie_keeps_the_champion_and_says_so():
    decision = decide(metrics(0.60), metrics(0.60), policy())
    assert not decision.promote
    assert "accuracy 0.6000 <= 0.6000 (champion + margin)" in decision.reasons


def test_promotion_judges_the_model_as_served():
    """Both versions recorded evaluate's served accuracy (ONNX Runtime / int8): that decides,
    not the PyTorch figure; and a served runtime that disagrees with the model is refused."""
    champion = metrics(0.60) | {"served.accuracy": 0.60, "served.argmax_agreement": 1.0}
    # better in PyTorch, worse as served (say int8 costs it 3 points): not promoted
    served_worse = metrics(0.62) | {"served.accuracy": 0.57, "served.argmax_agreement": 0.95}
    decision = decide(served_worse, champion, policy(min_served_agreement=0.9))
    assert not decision.promote
    assert "served.accuracy 0.5700 <= 0.6000 (champion + margin)" in decision.reasons
    served_better = metrics(0.60) | {"served.accuracy": 0.61, "served.argmax_agreement": 0.995}
    assert decide(served_better, champion, policy()).promote
    # agreement below the floor: refused even as a first model
    disagreeing = metrics(0.70) | {"served.accuracy": 0.70, "served.argmax_agreement": 0.97}
    first = decide(disagreeing, None, policy(min_served_agreement=0.99))
    assert not first.promote and "min_served_agreement" in "; ".join(first.reasons)


def test_the_policy_is_stated_from_the_code_in_the_card_and_the_docs():
    """One source: the model card and docs/serving.md carry `rules()` for the committed
    values; and the words match what `decide` does at the edge (strictly more than)."""
    from tests.conftest import ROOT

    policy = default_params().registry
    card = policy_card("klue-nli", policy)
    page = (ROOT / "docs/serving.md").read_text()
    block = page.split("<!-- policy:start -->\n")[1].split("<!-- policy:end -->")[0]
    assert block == "".join(f"- {rule}\n" for rule in rules(policy))
    assert all(f"- {rule}" in card for rule in rules(policy))
    assert f"at least {policy.min_served_agreement}" in rules(policy)[0]
    assert "more than the champion's" in rules(policy)[1]
    at_margin = {"accuracy": 0.7 + policy.min_accuracy_gain, "f1.entailment": 0.7}
    assert not decide(at_margin, {"accuracy": 0.7, "f1.entailment": 0.7}, policy).promote
