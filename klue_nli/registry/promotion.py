"""Promote a registered version by policy, roll back, and show the comparison.

Aliases, not the deprecated stages: `champion` is what is served, `previous` the champion it
replaced (so `rollback` is one command). Every decision and its reasons are written on the
candidate version as tags. Promotions on one machine are serialised by a file lock, so two
racing promotions leave exactly one champion.

    klue-nli promote | rollback | show
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from klue_nli.core.errors import UserError
from klue_nli.core.params import Params
from klue_nli.registry.client import (
    CHAMPION,
    PREVIOUS,
    alias_version,
    client,
    evidence,
    get_version,
    registry_lock,
    version_metrics,
)
from klue_nli.registry.export import verified_model_dir
from klue_nli.registry.policy import Decision, decide

CHECKS_TAG = "promotion.checks"  # each rule, its figure and its verdict (JSON)
CARD_SECTION = "\n### Promotion\n"


def promote(
    params: Params, version: str | None = None, allow_variant_change: bool = False
) -> tuple[ModelVersion, Decision]:
    """Apply the policy to `version` (default: the newest) and move the aliases if it holds.
    allow_variant_change: the candidate may be served another way than the champion (runtime
    or precision), compared as each is served."""
    name, c = params.registry.model_name, client()
    with registry_lock(name):
        candidate = get_version(c, name, version)
        champion = alias_version(c, name, CHAMPION)
        if champion is not None and champion.version == candidate.version:
            if "promotion.decision" in candidate.tags:
                return candidate, Decision(
                    False, [f"version {candidate.version} is champion already"]
                )
            # a promotion stopped after moving the alias: finish writing its record
            decision = Decision(True, ["completed an interrupted promotion"])
            _record(c, name, candidate.version, decision, alias_version(c, name, PREVIOUS))
            return c.get_model_version(name, candidate.version), decision
        decision = decide(
            evidence(candidate),
            evidence(champion) if champion else None,
            params.registry,
            allow_variant_change,
        )
        if decision.promote:
            try:  # never promote what could not be served
                with tempfile.TemporaryDirectory() as tmp:
                    verified_model_dir(name, candidate.version, Path(tmp))
            except UserError as exc:
                refusal = Decision(False, [str(exc)])
                _record(c, name, candidate.version, refusal, champion, verdict="refused")
                raise UserError(f"{name} v{candidate.version}: not promoted: {exc}") from None
            # previous first: a crash between the two calls still leaves one champion
            if champion is not None:
                c.set_registered_model_alias(name, PREVIOUS, champion.version)
            c.set_registered_model_alias(name, CHAMPION, candidate.version)
        _record(c, name, candidate.version, decision, champion)
    return c.get_model_version(name, candidate.version), decision


def _record(
    c: MlflowClient,
    name: str,
    version: str,
    decision: Decision,
    champion: ModelVersion | None,
    verdict: str | None = None,
) -> None:
    """Write the decision on the version; `verdict` overrides promoted/rejected ("refused":
    the artifact failed its checks). The decision tag goes last: its presence means the
    record is complete."""
    verdict = verdict or ("promoted" if decision.promote else "rejected")
    checks = [{"rule": k.rule, "figure": k.figure, "holds": k.holds} for k in decision.checks]
    _card_section(c, name, version, decision, verdict)
    for key, value in {
        "promotion.reasons": "; ".join(decision.reasons),
        CHECKS_TAG: json.dumps(checks, ensure_ascii=False),
        "promotion.compared_to": champion.version if champion else "none",
        "promotion.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "promotion.decision": verdict,
    }.items():
        c.set_model_version_tag(name, version, key, value)


def _card_section(
    c: MlflowClient, name: str, version: str, decision: Decision, verdict: str
) -> None:
    """The version's model card with its promotion: every rule, its figure, its verdict."""
    card = (c.get_model_version(name, version).description or "").split(CARD_SECTION)[0]
    lines = [f"- {check.line()}" for check in decision.checks] or [
        f"- {reason}" for reason in decision.reasons
    ]
    section = f"Decision: **{verdict}**\n\n" + "\n".join(lines) + "\n"
    c.update_model_version(name, version, card.rstrip("\n") + "\n" + CARD_SECTION + section)


def rollback(params: Params) -> ModelVersion:
    """Make `previous` the champion again; the demoted version is tagged rolled_back."""
    name, c = params.registry.model_name, client()
    with registry_lock(name):
        previous = alias_version(c, name, PREVIOUS)
        champion = alias_version(c, name, CHAMPION)
        if previous is None:
            raise UserError(f"{name}: no '{PREVIOUS}' version to roll back to")
        c.set_registered_model_alias(name, CHAMPION, previous.version)
        c.delete_registered_model_alias(name, PREVIOUS)
        if champion is not None:
            c.set_model_version_tag(name, champion.version, "rolled_back", "true")
    return c.get_model_version(name, previous.version)


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows
    )


def comparison(candidate: ModelVersion, champion: ModelVersion | None) -> str:
    cand = version_metrics(candidate)
    champ = version_metrics(champion) if champion else {}
    rows = [
        (
            "metric",
            f"candidate v{candidate.version}",
            f"champion v{champion.version}" if champion else "champion (none)",
        )
    ]
    for key in sorted(cand):
        rows.append((key, f"{cand[key]:.4f}", f"{champ[key]:.4f}" if key in champ else "-"))
    return table(rows)
