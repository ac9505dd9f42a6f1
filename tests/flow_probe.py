"""Run the training flow once and print a JSON summary of its task runs (used by
tests/e2e/test_flows.py in a scratch project: `python flow_probe.py '<flow params as JSON>'`)."""

import json
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.training import training_flow

state = training_flow(**json.loads(sys.argv[1]), return_state=True)
flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
with get_client(sync_client=True) as client:
    tasks = []
    runs = client.read_task_runs(
        flow_run_filter=flow_run, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=100
    )
    for run in sorted(runs, key=lambda r: r.start_time or r.expected_start_time):
        history = [s.type.value for s in client.read_task_run_states(run.id)]
        tasks.append(
            {
                "name": run.name,
                "state": run.state_type.value,
                "run_count": run.run_count,
                "history": history,
            }
        )
result = state.result() if state.is_completed() else None  # what the flow returned
summary = {"state": state.type.value, "message": state.message, "tasks": tasks, "result": result}
print("SUMMARY " + json.dumps(summary, default=str))
