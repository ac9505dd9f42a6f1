"""Prefect flow: check the served champion's answers for drift (klue_nli/monitoring/)
and post a drift to the team's alert webhook, the one training failures go to (its URL in a
Prefect Secret block, never a parameter).

    KLUE_NLI_ALERT_WEBHOOK=URL klue-nli deploy --monitor http://127.0.0.1:3000   # hourly
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.blocks.system import Secret

from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.inference.drift import THRESHOLD
from klue_nli.monitoring.drift_check import check, one_line
from klue_nli.monitoring.webhook import notify, shown

STATE_FILE = ".monitor-state.json"  # the last check's counts: each run compares what came since


@flow(name="klue-nli-monitor", log_prints=True)
def monitor_flow(
    service_url: str,
    webhook_secret: str | None = None,
    state_file: str = STATE_FILE,
    min_answers: int = 200,
    threshold: float = THRESHOLD,
    params_file: str = PARAMS_FILE,
) -> dict[str, Any]:
    """The champion's answers since the last run against its dev profile; a drift is posted
    to the webhook whose URL the Prefect Secret block `webhook_secret` holds (`klue-nli
    deploy --alert-webhook` saves it)."""
    model_name = load_params(params_file).registry.model_name
    result = check(service_url, model_name, state_file, min_answers, threshold)
    print(one_line(result))
    if webhook_secret and result["drift"]:
        webhook_url = Secret.load(webhook_secret).get()
        notify(webhook_url, result)
        print(f"posted to {shown(webhook_url)}")
    return result
