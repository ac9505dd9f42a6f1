"""Drift of the served answers, seen from outside the service: the champion's answers counted
by the service's Prometheus metrics (service/prometheus.py), against the profile its
version recorded on KLUE dev at registration (klue_nli/inference/drift.py states the test).

The window is the answers given since the last check: each check keeps the counts it saw in
a state file, and the next compares only what came after (a restarted service, whose counts
started again from zero, is taken whole: its start time on /metrics tells it).

    klue-nli monitor --url http://127.0.0.1:3000 --since monitor-state.json
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json
from klue_nli.inference.drift import CONFIDENCE_BUCKETS, THRESHOLD, compare
from klue_nli.registry.client import CHAMPION, alias_version, client
from klue_nli.registry.register import PROFILE_TAG


def champion_profile(model_name: str) -> tuple[str, dict]:
    """The champion's version and its dev profile."""
    version = alias_version(client(), model_name, CHAMPION)
    if version is None:
        raise UserError(f"no {CHAMPION} for {model_name!r}: run `make champion` first")
    raw = version.tags.get(PROFILE_TAG)
    if raw is None:
        raise UserError(
            f"{model_name} version {version.version} has no {PROFILE_TAG} tag (registered "
            "before drift monitoring): run evaluate and `klue-nli register` again"
        )
    profile = json.loads(raw)
    if "unsure_share" not in profile:
        raise UserError(
            f"{model_name} version {version.version}'s {PROFILE_TAG} has no unsure share "
            "(evaluated before unsure answers): run evaluate and `klue-nli register` again"
        )
    return str(version.version), profile


# The service's start (its first worker's, in seconds since the epoch): a new value means the
# counts started again from zero, whatever they add up to now (service/prometheus.py).
STARTED = "klue_nli_service_start_time_seconds"


def served_counts(metrics_text: str, version: str) -> dict:
    """The answers of `version` in a /metrics page: {"labels": {label: n}, "confidence":
    [n per CONFIDENCE_BUCKETS bin], "unsure": n, "started": the service's start}, summed over
    workers."""
    labels: dict[str, float] = {}
    unsure = 0.0
    cumulative = dict.fromkeys(CONFIDENCE_BUCKETS, 0.0)
    started = None
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == STARTED:
                started = sample.value
            if sample.labels.get("model_version") != version:
                continue
            if sample.name == "klue_nli_answers_total":
                label = sample.labels["label"]
                labels[label] = labels.get(label, 0.0) + sample.value
            elif sample.name == "klue_nli_unsure_answers_total":
                unsure += sample.value
            elif sample.name == "klue_nli_answer_confidence_bucket":
                bound = float(sample.labels["le"])
                if bound in cumulative:
                    cumulative[bound] += sample.value
    counts = [cumulative[b] for b in CONFIDENCE_BUCKETS]
    per_bin = [counts[0]] + [b - a for a, b in itertools.pairwise(counts)]
    return {"labels": labels, "confidence": per_bin, "unsure": unsure, "started": started}


def since(now: dict, before: dict | None) -> dict:
    """The counts added since `before` (the last check's), or `now` whole when the service
    restarted in between: its start time changed, or (a page without it) a count went down."""
    if before is None or before.get("started") != now.get("started") or "unsure" not in before:
        return now  # (a state written before unsure answers were counted: taken whole too)
    labels = {k: v - before["labels"].get(k, 0.0) for k, v in now["labels"].items()}
    confidence = [a - b for a, b in zip(now["confidence"], before["confidence"], strict=True)]
    unsure = now["unsure"] - before["unsure"]
    if min([*labels.values(), *confidence, unsure], default=0.0) < 0:
        return now
    return {"labels": labels, "confidence": confidence, "unsure": unsure}


def check(
    url: str,
    model_name: str,
    state_file: str | None = None,
    min_answers: int = 200,
    threshold: float = THRESHOLD,
) -> dict:
    """Compare the champion's answers since the last check with its dev profile. Fewer than
    `min_answers` new answers: no verdict, and the window stays open."""
    version, profile = champion_profile(model_name)
    try:
        page = requests.get(url.rstrip("/") + "/metrics", timeout=10)
        page.raise_for_status()
    except requests.RequestException as exc:
        raise UserError(f"monitor: {url}/metrics did not answer: {exc}") from None
    now = served_counts(page.text, version)
    state = Path(state_file) if state_file else None
    before = json.loads(state.read_text()) if state and state.is_file() else None
    window = since(now, before.get(version) if before else None)
    answers = int(sum(window["labels"].values()))
    result = {"model_version": version, "url": url, "answers": answers}
    if answers < min_answers:
        return {**result, "drift": None, "reason": f"fewer than {min_answers} new answers"}
    result.update(
        compare(window["labels"], window["confidence"], window["unsure"], profile, threshold)
    )
    if state is not None:
        atomic_write_json(state, {version: now})
    return result


def one_line(result: dict) -> str:
    """The verdict in one line."""
    head = f"model version {result['model_version']}, {result['answers']} answers"
    if result["drift"] is None:
        return f"no verdict: {head} ({result['reason']})"
    verdict = "drift" if result["drift"] else "no drift"
    return (
        f"{verdict}: {head}; label PSI {result['label_psi']:.3f}, confidence PSI "
        f"{result['confidence_psi']:.3f}, unsure PSI {result['unsure_psi']:.3f} (unsure "
        f"{result['served_unsure_share']:.1%} vs {result['reference_unsure_share']:.1%} on dev; "
        f"threshold {result['threshold']})"
    )
