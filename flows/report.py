"""The flow run's report: dev metrics, the promotion decision and the champion comparison,
as a Markdown artifact in the Prefect UI."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from klue_nli.core.manifest import PROVENANCE_FILE
from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.registry import tracking


def _run_link(run_id: str) -> str:
    uri = tracking.redact(tracking.tracking_uri())  # a server's password is not shown
    if uri.startswith("http"):
        return f"[{run_id}]({uri.rstrip('/')}/#/runs/{run_id})"
    return f"`{run_id}` in `{uri}` (open with `make mlflow-ui`)"


def report_markdown(stages: dict[str, str], promotion: dict, bento: str | None) -> str:
    params = load_params(PARAMS_FILE)
    metrics = json.loads(Path(params.paths.eval_metrics).read_text())
    provenance = json.loads((Path(params.paths.model_dir) / PROVENANCE_FILE).read_text())
    rows = ["| metric | value |", "|---|---|"]
    rows += [
        f"| accuracy | {metrics['accuracy']:.4f} |",
        f"| macro-F1 | {metrics['macro_f1']:.4f} |",
    ]
    rows += [f"| F1 {k} | {v['f1']:.4f} |" for k, v in metrics["per_class"].items()]
    rows += [f"| baseline {k} | {v:.4f} |" for k, v in metrics["baselines"].items()]
    verdict = "promoted to **champion**" if promotion["promoted"] else "**not promoted**"
    return "\n".join(
        [
            "# KLUE-NLI training run",
            "",
            "Stages: " + ", ".join(f"{s} ({state})" for s, state in stages.items()),
            "",
            *rows,
            "",
            f"## Promotion: version {promotion['version']} {verdict}",
            "",
            *[f"- {reason}" for reason in promotion["reasons"]],
            "",
            "```",
            promotion["comparison"],
            "```",
            "",
            f"MLflow run: {_run_link(provenance['mlflow_run_id'])}",
            *([f"\nPackaged: `{bento}`"] if bento else []),
        ]
    )


def write_report(stages: dict[str, str], promotion: dict, bento: str | None) -> None:
    create_markdown_artifact(
        markdown=report_markdown(stages, promotion, bento),
        key="klue-nli-training-report",
        description="Dev metrics, champion comparison and promotion decision",
    )
