"""Deploy the training flow on a process work pool, on a cron schedule.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.deploy [--cron "0 3 * * 1"]

The deployment runs the flow from this checkout (a process worker on this machine picks it up).
"""

from __future__ import annotations

import argparse
import json

from flows.training import PROJECT_DIR, training_flow
from klue_nli.core.cli import apply_quiet_defaults

POOL = "klue-nli"
DEPLOYMENT = "weekly-retraining"
WEEKLY = "0 3 * * 1"  # Mondays 03:00


def deploy(cron: str = WEEKLY, parameters: dict | None = None, pool: str = POOL) -> str:
    flow = training_flow.from_source(
        source=str(PROJECT_DIR), entrypoint="flows/training.py:training_flow"
    )
    deployment_id = flow.deploy(
        name=DEPLOYMENT,
        work_pool_name=pool,
        cron=cron,
        parameters=parameters or {},
        build=False,
        push=False,
        print_next_steps=False,
        description="Retrain, evaluate, register and promote KLUE-NLI; package the champion.",
    )
    return str(deployment_id)


def alert_on_failure(webhook_url: str, deployment: str | None = None) -> str:
    """An automation: every Failed or Crashed run of the training flow (of `deployment`, a
    "flow/deployment" name, if given) POSTs a JSON notification to `webhook_url`."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    block = CustomWebhookNotificationBlock(
        name="klue-nli-alerts",
        url=webhook_url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
    )
    block_id = block.save("klue-nli-alerts", overwrite=True)
    related = {"prefect.resource.role": "flow", "prefect.resource.name": training_flow.name}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cron", default=WEEKLY)
    parser.add_argument("--pool", default=POOL)
    parser.add_argument("--params", default="{}", help="flow parameters as JSON")
    parser.add_argument(
        "--alert-webhook", metavar="URL", help="only add the failure automation posting to URL"
    )
    args = parser.parse_args()
    apply_quiet_defaults()
    if args.alert_webhook:
        automation_id = alert_on_failure(args.alert_webhook)
        print(f"automation klue-nli-training-failed ({automation_id}) -> {args.alert_webhook}")
        return
    deployment_id = deploy(args.cron, json.loads(args.params), args.pool)
    print(f"deployed {training_flow.name}/{DEPLOYMENT} ({deployment_id}) on pool {args.pool}")


if __name__ == "__main__":
    main()
