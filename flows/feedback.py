"""The flow's feedback task: export the accepted corrections to paths.feedback_pairs (a
dependency of featurize in dvc.yaml) before the pipeline runs, so a retraining learns from
what reviewers accepted since the last one."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from klue_nli.core.errors import UserError
from klue_nli.core.params import load_params
from klue_nli.data.feedback import FeedbackStore, export_accepted, store_url


@task
def export_feedback(params_file: str) -> dict[str, Any]:
    """The export's counts; with the store out of reach, the last export (in git) stands and
    the run goes on, saying so."""
    logger = get_run_logger()
    params = load_params(params_file)
    url = store_url(params.feedback.database_url, params.paths.feedback_store)
    try:
        written, left_out = export_accepted(FeedbackStore(url), params)
    except UserError as exc:
        logger.warning(f"feedback not exported, training on the last export: {exc}")
        return {"exported": None, "error": str(exc)}
    logger.info(
        f"feedback: {written} accepted pairs exported to {params.paths.feedback_pairs}"
        + (f" ({left_out} left out: their premise is in KLUE dev)" if left_out else "")
    )
    return {"exported": written, "left_out_dev": left_out}
