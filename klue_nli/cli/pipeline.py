"""`klue-nli recipe | sweep | flow | deploy`: running the pipeline."""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from klue_nli.core.env import WEBHOOK_ENV
from klue_nli.core.errors import UserError
from klue_nli.core.project import project_dir

sets_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="a params.yaml key on top of the recipe (repeatable)",
)


# The project's deployments module, loaded from the project folder (the working directory):
# the library imports no flow. It names the flows' entrypoints (DEPLOY_MODULE.TRAINING).
DEPLOY_MODULE = "flows/deploy.py"


def load_flow(entrypoint: str) -> Any:
    """A flow of the project folder, by its Prefect entrypoint (`path/file.py:flow`)."""
    from prefect.flows import load_flow_from_entrypoint

    path, _, name = entrypoint.partition(":")
    script = _script(path)
    return _loaded(script, lambda: load_flow_from_entrypoint(f"{script}:{name}", False))


def load_module(path: str) -> Any:
    """A module of the project folder by its file path, as Prefect loads an entrypoint's file."""
    from prefect.utilities.importtools import load_script_as_module

    script = _script(path)
    return _loaded(script, lambda: load_script_as_module(str(script)))


def _script(path: str) -> Path:
    script = project_dir() / path
    if not script.is_file():
        raise UserError(f"{script}: not found; the project folder holds the flows ({path})")
    return script


def _loaded(script: Path, load: Callable[[], Any]) -> Any:
    """What `load` returns; a file that fails to run is one line naming it and the error."""
    from prefect.exceptions import ScriptError

    try:
        return load()
    except ScriptError as exc:
        cause = f"{type(exc.user_exc).__name__}: {exc.user_exc}"
        raise UserError(f"{script}: could not be loaded ({cause})") from None


def _split(text: str) -> list[str]:
    return text.replace(",", " ").split()


@click.command()
@click.argument("name")
@click.option("--run", is_flag=True, help="run `dvc exp run` with them (make demo, quick, run)")
@sets_option
def recipe(name: str, run: bool, sets: tuple[str, ...]) -> None:
    """Print a recipe's `dvc exp run -S` arguments (recipes/NAME.yaml), or run them."""
    from klue_nli.core.env import require_command
    from klue_nli.experiments.overrides import parse_sets
    from klue_nli.experiments.recipes import recipe_args

    project_dir()  # the recipes and params.yaml are the working directory's
    extra = parse_sets(list(sets))
    overrides = recipe_args(name, os.environ, extra)
    if not run:
        print(shlex.join(overrides))
        return
    dvc = require_command("dvc")
    started = time.time()
    # an argument list, not a shell line: a path with spaces stays one argument
    code = subprocess.run([dvc, "exp", "run", *overrides]).returncode
    if code == 0:
        from klue_nli.experiments.records import write_record

        # after the run, params.yaml holds the recipe's values (dvc exp run wrote them)
        # the largest resident set among the run's processes (the stages are its descendants)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        written = write_record(
            name, started, time.time() - started, sets=extra, peak_rss_mb=peak_mb
        )
        if written is not None:
            print(f"klue-nli recipe: the run's figures: {written}")
    raise SystemExit(code)


@click.command()
@click.option("--pairs", default="8000 16000", show_default=True, help="data.train_pairs")
@click.option("--epochs", default="1", show_default=True, help="train.epochs")
@click.option("--lr", default="5e-5 1e-4", show_default=True, help="train.learning_rate")
@click.option("--pooling", default="cls mean", show_default=True, help="model.pooling")
@click.option("--precision", default="bf16-mixed", show_default=True, help="train.precision")
# an axis given no values keeps the demo recipe's value
@click.option("--warmup", default="", help="train.warmup_ratio")
@click.option("--weight-decay", default="", help="train.weight_decay")
@click.option("--layer-decay", default="", help="train.layer_decay")
@click.option("--ema", default="", help="train.ema_decay (null: off)")
@click.option("--swa", default="", help="train.swa_from (null: off)")
@click.option("--xnli", default="", help="data.kornli.add_dev_to_train (false true)")
@click.option("--seed", default="", help="seed (7 8 9: the spread between seeds)")
@click.option(
    "--one-at-a-time", is_flag=True, help="vary one axis at a time around each's first value"
)
@click.option("--dry-run", is_flag=True, help="print the experiments' commands only")
def sweep(dry_run: bool, one_at_a_time: bool, **axes: str) -> None:
    """DVC experiments on the demo recipe over a grid, ranked by validation accuracy."""
    from klue_nli.experiments.ranking import GRID_KEYS
    from klue_nli.experiments.sweep import sweep as run_sweep

    project_dir()  # the experiments run in the working directory's project
    # each option's parameter name, in GRID's order (click passes them in the order given)
    names = ("pairs", "epochs", "lr", "pooling", "precision", "warmup", "weight_decay")
    names += ("layer_decay", "ema", "swa", "xnli", "seed")
    values = [_split(axes[name]) for name in names]
    run_sweep(dict(zip(GRID_KEYS, values, strict=True)), dry_run, one_at_a_time)


@click.command()
@click.option("--recipe", "recipe_name", help="a recipe of recipes/ (demo, quick, full, ...)")
@click.option("--epochs", type=int, help="train.epochs")
@click.option("--model-name", help="model.name_or_path")
@click.option("--no-bento", is_flag=True, help="skip bentoml build")
@sets_option
def flow(
    recipe_name: str | None,
    epochs: int | None,
    model_name: str | None,
    no_bento: bool,
    sets: tuple[str, ...],
) -> None:
    """Run the Prefect training flow once, on the local API (make flow)."""
    from klue_nli.experiments.overrides import parse_sets

    training_flow = load_flow(load_module(DEPLOY_MODULE).TRAINING)
    result = training_flow(
        recipe=recipe_name,
        epochs=epochs,
        model_name=model_name,
        set_params=parse_sets(list(sets)),
        build_bento=not no_bento,
    )
    print(json.dumps(result["promotion"], ensure_ascii=False, indent=2))


@click.command()
@click.option("--cron", help="the schedule (default: prefect.yaml's, Mondays 03:00)")
@click.option("--pool", default="klue-nli", show_default=True, help="the process work pool")
@click.option("--params", "flow_params", default="{}", help="the flow's parameters, as JSON")
@click.option(
    "--alert-webhook",
    metavar="URL",
    envvar=WEBHOOK_ENV,
    help=f"only add the failure automation to URL (or ${WEBHOOK_ENV}: a command line is "
    "visible to every local user); kept in a Prefect Secret block",
)
@click.option(
    "--monitor",
    "service_url",
    metavar="URL",
    help="instead: deploy the hourly drift check of the service at URL (posts to --alert-webhook)",
)
def deploy(
    cron: str | None,
    pool: str,
    flow_params: str,
    alert_webhook: str | None,
    service_url: str | None,
) -> None:
    """Deploy weekly retraining on a work pool of PREFECT_API_URL (make deploy)."""
    deploy_module = load_module(DEPLOY_MODULE)
    if service_url:
        deployment_id = deploy_module.deploy_monitor(service_url, alert_webhook, cron, pool)
        name = f"klue-nli-monitor/{deploy_module.MONITOR_DEPLOYMENT}"
        print(f"deployed {name} ({deployment_id}) on pool {pool}")
        return
    if alert_webhook:
        automation_id = deploy_module.alert_on_failure(alert_webhook)
        from klue_nli.monitoring.webhook import shown

        print(f"automation klue-nli-training-failed ({automation_id}) -> {shown(alert_webhook)}")
        return
    try:
        parameters = json.loads(flow_params)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint="--params") from None
    deployment_id = deploy_module.deploy(cron, parameters, pool)
    name = f"{deploy_module.TRAINING_FLOW_NAME}/{deploy_module.DEPLOYMENT}"
    print(f"deployed {name} ({deployment_id}) on pool {pool}")


COMMANDS = (recipe, sweep, flow, deploy)
