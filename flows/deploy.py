"""Deploy the training flow on a process work pool, on a cron schedule.

    PREFECT_API_URL=http://127.0.0.1:4200/api klue-nli deploy [--cron "0 3 * * 1"]

The deployment runs the flow from this checkout (a process worker on this machine picks it up).
Its default schedule is the team deployment's in prefect.yaml, the one place it is written.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import Flow

# The project folder this file lives in: deployments run their flows from it.
PROJECT = Path(__file__).resolve().parents[1]
POOL = "klue-nli"
# Prefect entrypoints, as prefect.yaml names them: the deployments load the flows from files.
TRAINING = "flows/training.py:training_flow"
MONITOR = "flows/monitor.py:monitor_flow"
TRAINING_FLOW_NAME = "klue-nli-training"  # the name training_flow's decorator gives it
DEPLOYMENT = "weekly-retraining"
MONITOR_DEPLOYMENT = "hourly-drift"
# The team's alert webhook, kept in a Prefect Secret block: a chat webhook's URL is the secret
# that lets anyone post, so it is never a deployment parameter or a block's plain field.
WEBHOOK_SECRET = "klue-nli-alert-webhook"


def scheduled_cron() -> str:
    """The cron schedule of prefect.yaml's deployment (Mondays 03:00)."""
    doc = yaml.safe_load((PROJECT / "prefect.yaml").read_text(encoding="utf-8"))
    return doc["deployments"][0]["schedules"][0]["cron"]


def deploy(cron: str | None = None, parameters: dict | None = None, pool: str = POOL) -> str:
    flow = Flow.from_source(source=str(PROJECT), entrypoint=TRAINING)
    deployment_id = flow.deploy(
        name=DEPLOYMENT,
        work_pool_name=pool,
        cron=cron or scheduled_cron(),
        parameters=parameters or {},
        build=False,
        push=False,
        print_next_steps=False,
        description="Retrain, evaluate, register and promote KLUE-NLI; package the champion.",
    )
    return str(deployment_id)


def save_webhook(webhook_url: str) -> str:
    """The webhook URL into the Secret block WEBHOOK_SECRET (stored encrypted, shown masked
    by the API and the UI); its name."""
    from prefect.blocks.system import Secret

    Secret(value=webhook_url).save(WEBHOOK_SECRET, overwrite=True)
    return WEBHOOK_SECRET


def alert_on_failure(webhook_url: str, deployment: str | None = None) -> str:
    """An automation: every Failed or Crashed run of the training flow (of `deployment`, a
    "flow/deployment" name, if given) POSTs a JSON notification to `webhook_url`."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    save_webhook(webhook_url)
    block = CustomWebhookNotificationBlock(
        name="klue-nli-alerts",
        # the URL is one of the block's secrets (its `url` field is stored as it is)
        url="{{webhook_url}}",
        secrets={"webhook_url": webhook_url},
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    block_id = block.save("klue-nli-alerts", overwrite=True)
    related = {"prefect.resource.role": "flow", "prefect.resource.name": TRAINING_FLOW_NAME}
    automation = Automation(
        name="klue-nli-training-failed",
        description="Notify the team when a training run fails or crashes.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match_related=related,
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject="klue-nli training: {{ flow_run.name }} {{ flow_run.state.name }}",
                body="Flow run {{ flow_run.name }} ({{ flow_run.id }}) ended "
                "{{ flow_run.state.name }}: {{ flow_run.state.message }}",
            )
        ],
    )
    return str(automation.create().id)


def deploy_monitor(
    service_url: str, webhook_url: str | None, cron: str | None = None, pool: str = POOL
) -> str:
    """The drift check of the service at `service_url`, hourly unless `cron` says otherwise,
    posting a drift to `webhook_url` (kept in the Secret block; the deployment names it)."""
    secret = save_webhook(webhook_url) if webhook_url else None
    flow = Flow.from_source(source=str(PROJECT), entrypoint=MONITOR)
    deployment_id = flow.deploy(
        name=MONITOR_DEPLOYMENT,
        work_pool_name=pool,
        cron=cron or "0 * * * *",
        parameters={"service_url": service_url, "webhook_secret": secret},
        build=False,
        push=False,
        print_next_steps=False,
        description="Compare the served champion's answers with its dev profile (PSI).",
    )
    return str(deployment_id)
