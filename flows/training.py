"""Prefect flow: retrain, evaluate, register, promote and package the KLUE-NLI model.

Each DVC stage is a Prefect task running `dvc repro --single-item <stage>`, so DVC still
decides what is up to date and writes dvc.lock as `dvc repro` would, while Prefect shows each
stage's state, duration and log. Flow parameters override params.yaml keys the way
`dvc exp run -S` does (the file is edited, validated, and recorded in dvc.lock by the run).

    python -m flows.training                 # once, on the ephemeral local Prefect API
    python -m flows.training --recipe quick  # the 90-s plumbing run (KLUE_NLI_MIRROR, KCBERT_DIR)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from ruamel.yaml import YAML

from flows.recipes import RECIPES, targets
from klue_nli.core.cli import apply_quiet_defaults
from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_text
from klue_nli.core.manifest import PROVENANCE_FILE
from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.registry import tracking
from klue_nli.registry import versions as registry
from klue_nli.registry.client import CHAMPION, alias_version, client

PROJECT_DIR = Path(__file__).resolve().parent.parent
STAGES = ("download", "featurize", "train", "evaluate")
LOCK_FILE = ".pipeline.lock"


class StageFailed(RuntimeError):
    """A DVC stage failed; the message is the stage's own error line."""


def apply_overrides(overrides: dict[str, Any], params_file: Path) -> dict[str, Any]:
    """Set dotted keys in params.yaml (comments kept), validate, and write atomically.

    Returns the keys that changed. A value that fails validation leaves the file untouched.
    """
    # round-trip (typ "rt"): keeps comments and order, as `dvc exp run -S` does, and like
    # safe_load builds no arbitrary Python objects
    round_trip = YAML(typ="rt")
    doc = round_trip.load(params_file.read_text(encoding="utf-8"))
    changed = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            if key not in node:
                raise UserError(f"{dotted}: unknown params key")
            node = node[key]
        if leaf not in node:
            raise UserError(f"{dotted}: unknown params key")
        if node[leaf] != value:
            node[leaf] = value
            changed[dotted] = value
    buf = io.StringIO()
    round_trip.dump(doc, buf)
    candidate = params_file.with_name(f".{params_file.name}.candidate")
    candidate.write_text(buf.getvalue(), encoding="utf-8")
    try:
        load_params(candidate)  # one clear line naming the key if a value is wrong
    finally:
        candidate.unlink()
    if changed:
        atomic_write_text(params_file, buf.getvalue())
    return changed


def _env() -> dict[str, str]:
    # The stages' `python` must be this interpreter (the project's virtualenv).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path}


@task(task_run_name="{stage}")
def dvc_stage(stage: str) -> str:
    """Run one DVC stage if it is out of date; 'ran' or 'up to date'."""
    logger = get_run_logger()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    lines = []
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line and "\r" not in line:  # skip progress-bar redraws
            logger.info(line)
    if proc.wait() != 0:
        own = [ln for ln in lines if ln.startswith(f"{stage}: error:")]
        message = own[-1] if own else "\n".join(lines[-5:])
        raise StageFailed(message)
    return "up to date" if any("didn't change, skipping" in ln for ln in lines) else "ran"


@task
def register_and_promote(params_file: str) -> dict[str, Any]:
    params = load_params(params_file)
    name = params.registry.model_name
    before = alias_version(client(), name, CHAMPION)
    version = registry.register(params)
    version, decision = registry.promote(params, version.version)
    return {
        "version": str(version.version),
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "comparison": registry.comparison(version, before),
    }


@task
def publish(params_file: str, message: str) -> str:
    """Team mode: share this run with every other checkout. Cached outputs go to the DVC
    remote (`dvc push`); dvc.lock, params.yaml and the uncached metrics and plots (git's, as
    DVC intends) to the git remote the checkout came from. A fresh clone then gets the run
    with `git pull` + `dvc pull` and finds the pipeline up to date."""
    paths = load_params(params_file).paths
    tracked = ["dvc.lock", params_file, paths.train_live, paths.eval_metrics, paths.confusion]

    def run(*args: str) -> str:
        proc = subprocess.run(args, capture_output=True, text=True, env=_env())
        if proc.returncode:
            raise StageFailed(f"{' '.join(args[:3])} failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout

    run(sys.executable, "-m", "dvc", "push", "--quiet")
    run("git", "add", *tracked)
    if not run("git", "status", "--porcelain", *tracked).strip():
        return "nothing new to publish"
    run("git", "commit", "--quiet", "-m", message)
    run("git", "push", "--quiet", "origin", "HEAD")
    return run("git", "rev-parse", "HEAD").strip()


@task
def package(params_file: str) -> str:
    """Export the new champion to BentoML and build the Bento."""
    tag = registry.export_champion(load_params(params_file))
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    if proc.returncode:
        raise RuntimeError(f"bentoml build failed: {proc.stderr.strip()[-500:]}")
    return f"{tag} in bento {proc.stdout.strip().splitlines()[-1].removeprefix('__tag__:')}"


def _run_link(run_id: str) -> str:
    uri = tracking.tracking_uri()
    if uri.startswith("http"):
        return f"[{run_id}]({uri.rstrip('/')}/#/runs/{run_id})"
    return f"`{run_id}` in `{uri}` (open with `make mlflow-ui`)"


def report_markdown(stages: dict[str, str], promotion: dict, bento: str | None) -> str:
    params = load_params(PARAMS_FILE)
    metrics = json.loads(Path(params.paths.eval_metrics).read_text())
    run_id = json.loads((Path(params.paths.model_dir) / PROVENANCE_FILE).read_text())[
        "mlflow_run_id"
    ]
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
            f"MLflow run: {_run_link(run_id)}",
            *([f"\nPackaged: `{bento}`"] if bento else []),
        ]
    )


def registry_line(promotion: dict) -> str:
    verdict = "promoted" if promotion["promoted"] else "not promoted"
    return f"model version {promotion['version']} {verdict}"


@flow(name="klue-nli-training", log_prints=True)
def training_flow(
    recipe: str | None = None,
    epochs: int | None = None,
    model_name: str | None = None,
    set_params: dict[str, Any] | None = None,
    project_dir: str | None = None,
    build_bento: bool = True,
    publish_results: bool = False,
) -> dict[str, Any]:
    """recipe: 'demo', 'quick' or 'full' (make demo / quick / run); epochs, model_name, set_params
    ({"train.learning_rate": 3e-5, ...}) override params.yaml keys. publish_results (team
    deployments, prefect.yaml): push the outputs to the DVC remote and dvc.lock to git."""
    apply_quiet_defaults()
    os.chdir(project_dir or PROJECT_DIR)
    overrides: dict[str, Any] = dict(targets(recipe, os.environ)) if recipe else {}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if model_name is not None:
        overrides["model.name_or_path"] = model_name
    overrides.update(set_params or {})
    try:
        lock = FileLock(LOCK_FILE, timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(
            f"another pipeline run holds {LOCK_FILE}; not starting a second one"
        ) from None
    try:
        changed = apply_overrides(overrides, Path(PARAMS_FILE))
        if changed:
            print(f"params.yaml overrides: {changed}")
        # No task retries: the download stage retries transient failures itself (data.retries,
        # with backoff), under `dvc repro` as here; one layer, not 4 x 4 attempts.
        states = {"download": dvc_stage(stage="download")}
        for stage in STAGES[1:]:
            states[stage] = dvc_stage(stage=stage)
        promotion = register_and_promote(PARAMS_FILE)
        if publish_results:
            commit = publish(PARAMS_FILE, f"Retrained: {registry_line(promotion)}")
            print(f"published: {commit}")
        bento = package(PARAMS_FILE) if promotion["promoted"] and build_bento else None
        create_markdown_artifact(
            markdown=report_markdown(states, promotion, bento),
            key="klue-nli-training-report",
            description="Dev metrics, champion comparison and promotion decision",
        )
        return {"stages": states, "promotion": promotion, "bento": bento}
    finally:
        lock.release()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the training flow once (local Prefect API).")
    parser.add_argument("--recipe", choices=list(RECIPES))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--model-name")
    parser.add_argument("--no-bento", action="store_true", help="skip bentoml build")
    args = parser.parse_args()
    apply_quiet_defaults()
    try:
        result = training_flow(
            recipe=args.recipe,
            epochs=args.epochs,
            model_name=args.model_name,
            build_bento=not args.no_bento,
        )
    except (UserError, StageFailed) as exc:
        print(f"flow: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(result["promotion"], ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
