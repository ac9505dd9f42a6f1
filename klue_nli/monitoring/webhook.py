"""The team's alert webhook: a drift result POSTed as {"subject", "body"}, the shape the
training flow's failure automation sends (flows/deploy.py)."""

from __future__ import annotations

import json

import requests

from klue_nli.core.errors import UserError
from klue_nli.monitoring.drift_check import one_line


def notify(webhook_url: str, result: dict) -> None:
    """POST a drift result to the team's alert webhook (the one `klue-nli deploy
    --alert-webhook` gives training failures): {"subject", "body"}, as those are sent."""
    body = {"subject": f"klue-nli drift: model version {result['model_version']}"}
    body["body"] = one_line(result) + "\n" + json.dumps(result, sort_keys=True)
    try:
        requests.post(webhook_url, json=body, timeout=10).raise_for_status()
    except requests.RequestException as exc:
        raise UserError(f"monitor: the webhook {webhook_url} refused the alert: {exc}") from None
