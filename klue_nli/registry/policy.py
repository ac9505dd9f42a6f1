"""The promotion policy, pure: given the candidate's and the champion's dev metrics, promote
or not, and why. klue_nli/registry/promotion.py applies it to MLflow model versions."""

from __future__ import annotations

from dataclasses import dataclass, field

from klue_nli.core.params import RegistryParams


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)


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
        else "behaviour suite: reported, not required (`min_behaviour_pass`: null)",
        "the first version needs only the agreement and behaviour minimums",
        "compared only on the same dev file (its sha256); the artifact must load and verify",
    ]


def decide(
    candidate: dict[str, float], champion: dict[str, float] | None, policy: RegistryParams
) -> Decision:
    """The promotion policy, pure: the model as served must agree with the trained one, beat
    the champion by more than the margin (a tie keeps the champion), and lose no class's F1.

    Accuracy is the served configuration's (`served.accuracy`: serve.runtime and
    serve.quantize, as evaluate measured it) when both versions recorded one, the PyTorch
    model's otherwise."""
    reasons, ok = [], True
    agreement = candidate.get("served.argmax_agreement")
    if agreement is not None:
        if agreement >= policy.min_served_agreement:
            reasons.append(f"served agreement {agreement:.4f} >= {policy.min_served_agreement}")
        else:
            ok = False
            reasons.append(
                f"served agreement {agreement:.4f} < {policy.min_served_agreement} "
                "(min_served_agreement: the served model answers differently)"
            )
    floor = policy.min_behaviour_pass
    if floor is not None:
        rate = candidate.get("behaviour_pass", float("nan"))
        if rate >= floor:
            reasons.append(f"behaviour pass rate {rate:.4f} >= {floor:.4f}")
        else:  # NaN (not recorded) fails too
            ok = False
            reasons.append(f"behaviour pass rate {rate:.4f} < {floor:.4f} (min_behaviour_pass)")
    if champion is None:
        return Decision(ok, [*reasons, "no champion yet"])
    key = (
        "served.accuracy"
        if "served.accuracy" in candidate and "served.accuracy" in champion
        else "accuracy"
    )
    need = champion[key] + policy.min_accuracy_gain
    if candidate[key] > need:
        reasons.append(f"{key} {candidate[key]:.4f} > {need:.4f} (champion + margin)")
    else:
        ok = False
        reasons.append(f"{key} {candidate[key]:.4f} <= {need:.4f} (champion + margin)")
    for key in sorted(k for k in champion if k.startswith("f1.")):
        drop = champion[key] - candidate.get(key, 0.0)
        if drop > policy.max_f1_drop:
            ok = False
            reasons.append(f"{key} dropped {drop:.4f} > {policy.max_f1_drop:.4f}")
    return Decision(ok, reasons)
