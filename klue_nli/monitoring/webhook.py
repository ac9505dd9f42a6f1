"""The team's alert webhook: a drift result POSTed as {"subject", "body"}, the shape the
training flow's failure automation sends (flows/deploy.py)."""

from __future__ import annotations

import json
import urllib.parse

import requests

from klue_nli.core.errors import UserError
from klue_nli.monitoring.drift_check import one_line


def notify(webhook_url: str, result: dict) -> None:
    """POST a drift result to the team's alert webhook (the one `klue-nli deploy
    --alert-webhook` gives training failures): {"subject", "body"}, as those are sent."""
    body = {"subject": f"klue-nli drift: model version {result['model_version']}"}
    body["body"] = one_line(result) + "\n" + json.dumps(result, sort_keys=True)
    try:
        answer = requests.post(webhook_url, json=body, timeout=10)
        answer.raise_for_status()
    except requests.HTTPError:
        # not the exception's text: it quotes the URL, and a chat webhook's URL is its secret
        said = f"HTTP {answer.status_code}"
        raise UserError(
            f"monitor: the webhook {shown(webhook_url)} refused the alert ({said})"
        ) from None
    except requests.RequestException as exc:
        said = type(exc).__name__
        raise UserError(
            f"monitor: the webhook {shown(webhook_url)} did not answer ({said})"
        ) from None


def shown(webhook_url: str) -> str:
    """A webhook URL as lines and logs may show it: its scheme and host, not its path (a chat
    webhook's path is the secret that lets anyone post)."""
    parts = urllib.parse.urlsplit(webhook_url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"
