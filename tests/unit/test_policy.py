"""The promotion policy, a pure function: unit tests on inline metrics."""

from __future__ import annotations

import pytest

from klue_nli.core.params import RegistryParams
from klue_nli.registry.model_card import policy_card
from klue_nli.registry.policy import (
    AGREEMENT,
    BEHAVIOUR,
    DEV_DATA,
    ECE,
    PRECISION,
    RUNTIME,
    SERVED_ACCURACY,
    decide,
    rules,
)
from tests.conftest import default_params

LABELS = ("entailment", "contradiction", "neutral")


def policy(**changes: object) -> RegistryParams:
    """params.yaml's promotion policy with `changes`."""
    return default_params(registry=changes).registry


def metrics(acc: float, f1: float | None = None, **per_class: float) -> dict:
    """A version's evidence as register records it: served as OpenVINO fp32 with accuracy
    `acc`, agreeing with PyTorch everywhere, on one dev file."""
    f1s = {label: per_class.get(label, f1 if f1 is not None else acc) for label in LABELS}
    return {
        "accuracy": acc,
        **{f"f1.{k}": v for k, v in f1s.items()},
        SERVED_ACCURACY: acc,
        AGREEMENT: 1.0,
        BEHAVIOUR: 0.5,
        ECE: 0.02,
        RUNTIME: "openvino",
        PRECISION: "none",
        DEV_DATA: "d" * 64,
    }


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
    if rate is None:
        del candidate["behaviour_pass"]
    floored = policy(min_behaviour_pass=floor)
    assert decide(candidate, None, floored).promote is promote
    assert decide(candidate, metrics(0.6), floored).promote is promote


def test_a_tie_keeps_the_champion_and_says_so():
    decision = decide(metrics(0.60), metrics(0.60), policy())
    assert not decision.promote
    [check] = [c for c in decision.checks if c.rule.startswith("served accuracy")]
    assert (check.rule, check.figure, check.holds) == (
        "served accuracy > 0.6000 (champion + margin)", "0.6000", False
    )  # fmt: skip


def test_promotion_judges_the_model_as_served():
    """Both versions recorded evaluate's served accuracy (ONNX Runtime / int8): that decides,
    not the PyTorch figure; and a served runtime that disagrees with the model is refused."""
    champion = metrics(0.60) | {"served.accuracy": 0.60, "served.argmax_agreement": 1.0}
    # better in PyTorch, worse as served (say int8 costs it 3 points): not promoted
    served_worse = metrics(0.62) | {"served.accuracy": 0.57, "served.argmax_agreement": 0.95}
    decision = decide(served_worse, champion, policy(min_served_agreement=0.9))
    assert not decision.promote
    assert "served accuracy > 0.6000 (champion + margin): 0.5700 (fails)" in decision.reasons
    served_better = metrics(0.60) | {"served.accuracy": 0.61, "served.argmax_agreement": 0.995}
    assert decide(served_better, champion, policy()).promote
    # agreement below the floor: refused even as a first model
    disagreeing = metrics(0.70) | {"served.accuracy": 0.70, "served.argmax_agreement": 0.97}
    first = decide(disagreeing, None, policy(min_served_agreement=0.99))
    assert not first.promote and "served agreement >= 0.99: 0.9700 (fails)" in first.reasons


@pytest.mark.parametrize(
    ("ece", "most", "promote"), [(0.02, 0.05, True), (0.06, 0.05, False), (0.3, None, True)]
)
def test_probabilities_further_from_the_truth_than_max_ece_are_refused(ece, most, promote):
    """On when set (params.yaml sets it), for a first model too; null records it only."""
    candidate = metrics(0.7) | {ECE: ece}
    capped = policy(max_ece=most)
    for champion in (None, metrics(0.6)):
        decision = decide(candidate, champion, capped)
        assert decision.promote is promote
    if most is not None:
        verdict = "holds" if promote else "fails"
        assert f"dev ECE as served <= {most}: {ece:.4f} ({verdict})" in decision.reasons


@pytest.mark.parametrize("key", [AGREEMENT, SERVED_ACCURACY, BEHAVIOUR, ECE, DEV_DATA, RUNTIME])
def test_a_figure_a_rule_needs_and_a_version_lacks_refuses_promotion(key):
    """Nothing is skipped and nothing stands in: the PyTorch accuracy is no substitute for the
    served one, and an unknown dev file compares with nothing."""
    candidate = metrics(0.9)
    del candidate[key]
    for champion in (None, metrics(0.5)):
        decision = decide(candidate, champion, policy(min_behaviour_pass=None))
        assert not decision.promote
        assert f"candidate records {key}: missing: run evaluate and register again (fails)" in (
            decision.reasons
        )
    unknown = metrics(0.9) | {DEV_DATA: "unknown"}
    assert not decide(unknown, metrics(0.5), policy()).promote
    champion = metrics(0.5)
    del champion[SERVED_ACCURACY]
    refused = decide(metrics(0.9), champion, policy())
    assert not refused.promote and any(
        "champion records served.accuracy" in r for r in refused.reasons
    )


def test_versions_are_compared_only_on_one_dev_file_and_one_served_variant():
    other_dev = metrics(0.9) | {DEV_DATA: "e" * 64}
    decision = decide(other_dev, metrics(0.5), policy())
    assert not decision.promote
    assert decision.reasons[-1].startswith("evaluated on the champion's dev file: eeeeeeeeeeee… vs")
    bf16 = metrics(0.9) | {PRECISION: "bf16"}
    refused = decide(bf16, metrics(0.5), policy())
    assert not refused.promote
    assert refused.reasons[-1] == (
        "served as the champion is (allow_variant_change to change it): "
        "openvino none -> openvino bf16 (fails)"
    )
    asked = decide(bf16, metrics(0.5), policy(), allow_variant_change=True)
    assert asked.promote
    assert "served variant changes (asked for): openvino none -> openvino bf16 (holds)" in (
        asked.reasons
    )


def test_every_rule_is_shown_with_its_figure_and_verdict():
    decision = decide(metrics(0.7, neutral=0.4), metrics(0.6), policy(max_f1_drop=0.05))
    lines = decision.reasons
    assert "served agreement >= 0.99: 1.0000 (holds)" in lines
    assert "served accuracy > 0.6000 (champion + margin): 0.7000 (holds)" in lines
    assert "f1.neutral drop <= 0.05: 0.2000 (fails)" in lines
    assert "dev ECE as served <= 0.05: 0.0200 (holds)" in lines
    assert len(decision.checks) == 6  # agreement, ECE, accuracy, three classes' F1


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
    at_margin = metrics(0.7) | {SERVED_ACCURACY: 0.7 + policy.min_accuracy_gain}
    assert not decide(at_margin, metrics(0.7), policy).promote
