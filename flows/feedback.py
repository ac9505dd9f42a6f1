"""The flow's feedback task: export the accepted corrections to paths.feedback_pairs (a
dependency of featurize in dvc.yaml) before the pipeline runs, so a retraining learns from
what reviewers accepted since the last one."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from klue_nli.core.params import load_params
from klue_nli.data.feedback import export_accepted, open_store


@task
def export_feedback(params_file: str) -> dict[str, Any]:
    """The export's counts. A store out of reach stops the run with one line naming it: an
    older export is never trained on in its place."""
    logger = get_run_logger()
    params = load_params(params_file)
    counts = export_accepted(open_store(params), params)
    left_out = ", ".join(f"{n} as {name}" for name, n in counts["left_out"].items())
    logger.info(
        f"feedback: {counts['pairs']} accepted pairs exported to {params.paths.feedback_pairs}"
        + (f" (left out, copies of evaluation premises: {left_out})" if left_out else "")
    )
    return counts
