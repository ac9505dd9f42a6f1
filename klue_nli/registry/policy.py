"""The promotion policy, pure: given what the candidate and the champion recorded of their
evaluation, promote or not, and why. klue_nli/registry/promotion.py applies it to MLflow model
versions.

Every rule is checked on a recorded figure; a figure a rule needs and a version lacks refuses
the promotion with a reason naming the missing key (nothing is skipped, and no other figure
stands in). Champion and candidate are compared only when both were measured on the same dev
file and as served the same way (runtime and precision); a change of the served variant is a
promotion of its own, asked for by name (`allow_variant_change`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from klue_nli.core.params import RegistryParams

# The keys of a version's evidence (klue_nli/registry/client.py, `evidence`)
AGREEMENT = "served.argmax_agreement"
SERVED_ACCURACY = "served.accuracy"
ECE = "served.ece"  # dev expected calibration error of the probabilities as served
BEHAVIOUR = "behaviour_pass"
RUNTIME, PRECISION = "served.runtime", "served.quantize"
DEV_DATA = "data.dev_sha256"


@dataclass(frozen=True)
class Check:
    """One rule applied: what it asks, the figure it found, and whether it holds."""

    rule: str
    figure: str
    holds: bool

    def line(self) -> str:
        return f"{self.rule}: {self.figure} ({'holds' if self.holds else 'fails'})"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


def rules(policy: RegistryParams) -> list[str]:
    """The policy in words, from the same values `decide` compares (the model card and the
    docs state it from here)."""
    floor = policy.min_behaviour_pass
    return [
        f"the served runtime gives the trained model's answer on at least "
        f"{policy.min_served_agreement} of dev (`min_served_agreement`)",
        f"dev accuracy as served more than the champion's + {policy.min_accuracy_gain} "
        "(`min_accuracy_gain`; a tie keeps the champion)",
        f"no class's dev F1 more than {policy.max_f1_drop} below the champion's (`max_f1_drop`)",
        f"behaviour suite pass rate at least {floor} (`min_behaviour_pass`)"
        if floor is not None
        else "behaviour suite pass rate recorded; no minimum (`min_behaviour_pass`: null)",
        f"dev expected calibration error as served at most {policy.max_ece} (`max_ece`)"
        if policy.max_ece is not None
        else "dev expected calibration error recorded; no maximum (`max_ece`: null)",
        "the first version needs only the agreement, behaviour and calibration rules",
        "every figure a rule reads must be recorded: a missing one refuses promotion",
        "compared only on the same dev file (its sha256) and the same served runtime and "
        "precision (a change of either is promoted only when asked for); the artifact must "
        "load and verify",
    ]


def missing(evidence: dict, keys: tuple[str, ...], whose: str) -> list[Check]:
    """A failing check for each key `evidence` lacks (or records as unknown or NaN)."""
    return [
        Check(f"{whose} records {key}", "missing: run evaluate and register again", False)
        for key in keys
        if _absent(evidence.get(key))
    ]


def decide(
    candidate: dict,
    champion: dict | None,
    policy: RegistryParams,
    allow_variant_change: bool = False,
) -> Decision:
    """The promotion policy: the model as served must agree with the trained one and pass
    the behaviour floor; against a champion, as served, it must beat the champion's accuracy
    by more than the margin (a tie keeps the champion) and lose no class's F1."""
    needed = (AGREEMENT, SERVED_ACCURACY, BEHAVIOUR, ECE, RUNTIME, PRECISION, DEV_DATA)
    gaps = missing(candidate, needed, "candidate")
    checks = gaps or _own_checks(candidate, policy)
    if champion is not None and not gaps:
        theirs = missing(champion, (SERVED_ACCURACY, RUNTIME, PRECISION, DEV_DATA), "champion")
        checks += theirs or _against(candidate, champion, policy, allow_variant_change)
    ok = all(c.holds for c in checks)
    reasons = [c.line() for c in checks] + ([] if champion is not None else ["no champion yet"])
    return Decision(ok, reasons, checks)


def _own_checks(candidate: dict, policy: RegistryParams) -> list[Check]:
    agreement, floor = candidate[AGREEMENT], policy.min_served_agreement
    checks = [Check(f"served agreement >= {floor}", f"{agreement:.4f}", agreement >= floor)]
    rate, minimum = candidate[BEHAVIOUR], policy.min_behaviour_pass
    if minimum is not None:
        checks.append(Check(f"behaviour pass rate >= {minimum}", f"{rate:.4f}", rate >= minimum))
    ece, most = candidate[ECE], policy.max_ece
    if most is not None:
        checks.append(Check(f"dev ECE as served <= {most}", f"{ece:.4f}", ece <= most))
    return checks


def _against(
    candidate: dict, champion: dict, policy: RegistryParams, allow_variant_change: bool
) -> list[Check]:
    if candidate[DEV_DATA] != champion[DEV_DATA]:
        figure = f"{candidate[DEV_DATA][:12]}… vs the champion's {champion[DEV_DATA][:12]}…"
        return [Check("evaluated on the champion's dev file", figure, False)]
    ours, theirs = _variant(candidate), _variant(champion)
    checks = []
    if ours != theirs:
        figure = f"{theirs} -> {ours}"
        if allow_variant_change:
            checks.append(Check("served variant changes (asked for)", figure, True))
        else:
            rule = "served as the champion is (allow_variant_change to change it)"
            return [Check(rule, figure, False)]
    need = champion[SERVED_ACCURACY] + policy.min_accuracy_gain
    have = candidate[SERVED_ACCURACY]
    rule = f"served accuracy > {need:.4f} (champion + margin)"
    checks.append(Check(rule, f"{have:.4f}", have > need))
    for key in sorted(k for k in champion if k.startswith("f1.")):
        drop = champion[key] - candidate.get(key, 0.0)
        rule = f"{key} drop <= {policy.max_f1_drop}"
        checks.append(Check(rule, f"{drop:.4f}", drop <= policy.max_f1_drop))
    return checks


def _variant(evidence: dict) -> str:
    return f"{evidence[RUNTIME]} {evidence[PRECISION]}"


def _absent(value: object) -> bool:
    if value is None or value == "unknown":
        return True
    return isinstance(value, float) and math.isnan(value)
