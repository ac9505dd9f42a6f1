"""Deploy the training flow on a process work pool, on a cron schedule.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.deploy [--cron "0 3 * * 1"]

The deployment runs the flow from this checkout (a process worker on this machine picks it up).
"""

from __future__ import annotations

import argparse
import json

from flows.training import PROJECT_DIR, training_flow
from klue_nli.cli import apply_quiet_defaults

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cron", default=WEEKLY)
    parser.add_argument("--pool", default=POOL)
    parser.add_argument("--params", default="{}", help="flow parameters as JSON")
    args = parser.parse_args()
    apply_quiet_defaults()
    deployment_id = deploy(args.cron, json.loads(args.params), args.pool)
    print(f"deployed {training_flow.name}/{DEPLOYMENT} ({deployment_id}) on pool {args.pool}")


if __name__ == "__main__":
    main()
