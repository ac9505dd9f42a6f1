"""MLflow conventions of the pipeline: where runs go, how they are tagged, the pipeline run's
lifecycle (one run per pipeline run, resumed after a kill, shared by DDP workers) and how the
model is logged.

The embedded default is a SQLite store in the project; MLFLOW_TRACKING_URI points it at a
server, and MLFLOW_EXPERIMENT_NAME picks another experiment, as in any MLflow project.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from klue_nli.core.io import atomic_write_text
from klue_nli.core.secrets import hide_password

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "klue-nli"
LOCK_FILE = "dvc.lock"
DVC_STAGE_ENV = "DVC_STAGE"  # set by DVC for every stage command it runs


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def redact(value: str) -> str:
    """A param value as it may be logged: a local absolute path becomes `<local>/<name>`
    (the MLflow store is shared; a home folder is not its business), and a password is shown
    as `***`: a URL's (parsed by SQLAlchemy's URL grammar, which reads a password holding
    `/`, `#` or `?`), one in a query string, and a libpq `password=`. Anything else is
    returned as it is."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme == "file":
        return f"<local>/{PurePosixPath(parsed.path).name}"
    if "://" not in value and value.startswith(("/", "~")):
        return f"<local>/{PurePosixPath(value).name}"
    return hide_password(value)


def source_name() -> str:
    """The running script, relative to the project (the working folder) when inside it."""
    script = Path(sys.argv[0]).resolve()
    try:
        return script.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(script)


def git_commit() -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def under_dvc() -> bool:
    """This process is a stage DVC runs (`dvc repro`, `dvc exp run`: DVC sets DVC_STAGE)."""
    return DVC_STAGE_ENV in os.environ


def dvc_hashes(stages: tuple[str, ...] = ("download", "featurize")) -> dict[str, str]:
    """The md5 DVC recorded in dvc.lock for these stages' outputs (written as each stage ends);
    none when this process does not run under DVC: then dvc.lock describes some other run's
    inputs, not this one's."""
    if not under_dvc():
        return {}
    try:
        lock = yaml.safe_load(Path(LOCK_FILE).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    hashes = {}
    for stage in stages:
        for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
            hashes[f"dvc.{stage}.{out['path']}"] = out.get("md5", "unknown")
    return hashes


# The pyfunc wrapper logged beside the model folder (code plus safetensors, no pickle).
MODEL_CODE = Path(__file__).resolve().parent / "mlflow_model.py"
# The layers the wrapper runs (it builds a Predictor): the logged model's code/ folder holds
# these and klue_nli/__init__.py, and no training, registry or test code.
MODEL_LAYERS = ("core", "data", "network", "inference")
# The distributions that code imports when the model loads and predicts, at this install's
# versions (the project's pins). Given, MLflow does not infer them: that loads the model once
# more in a subprocess (about 7 s a logged model) and names this project's own distribution,
# which no package index has: pip could not install the requirements.txt it wrote.
MODEL_REQUIREMENTS = (
    "mlflow",
    "numpy",
    "pandas",
    "pydantic",
    "pyyaml",
    "safetensors",
    "scipy",
    "tokenizers",
    "torch",
    "transformers",
)


def model_requirements() -> list[str]:
    """MODEL_REQUIREMENTS pinned to the versions installed here, without a local label (torch's
    "+cpu" names one index's build; the public version matches any index's)."""
    versions = {name: importlib.metadata.version(name) for name in MODEL_REQUIREMENTS}
    return [f"{name}=={version.split('+')[0]}" for name, version in versions.items()]


def stage_model_code(dst: Path) -> Path:
    """A copy of the klue_nli package cut to MODEL_LAYERS, under `dst`; its path."""
    package = MODEL_CODE.parents[1]
    root = dst / package.name
    root.mkdir(parents=True)
    shutil.copy(package / "__init__.py", root)
    for layer in MODEL_LAYERS:
        shutil.copytree(package / layer, root / layer, ignore=shutil.ignore_patterns("__pycache__"))
    return root


# The pipeline run a process started by train belongs to. Not MLflow's own MLFLOW_RUN_ID:
# a value left in a user's shell (from another project, say) would be adopted silently.
PIPELINE_RUN_ENV = "KLUE_NLI_MLFLOW_RUN_ID"


def start_run(params: dict[str, Any], metrics: dict[str, float], run_file: Path) -> str:
    """The pipeline run's MLflow run id: inherited by processes train starts through
    KLUE_NLI_MLFLOW_RUN_ID, resumed from `run_file` after a kill, or created with `params`
    (flat, redacted), lineage tags (git commit, DVC hashes) and `metrics` (the feature
    statistics). An MLFLOW_RUN_ID in the environment is not adopted."""
    run_id = os.environ.get(PIPELINE_RUN_ENV)
    if not run_id and run_file.exists():
        run_id = run_file.read_text().strip()
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    if not run_id:
        experiment = mlflow.set_experiment(experiment_name())
        runner = "dvc" if under_dvc() else "direct"
        tags = {"git_commit": git_commit(), "pipeline": runner, **dvc_hashes()}
        run_id = client.create_run(experiment.experiment_id, tags=tags).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            params=[Param(k, redact(str(v))) for k, v in sorted(params.items())],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        )
    run_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_file, run_id)
    return run_id


def log_model(run_id: str, model_dir: Path) -> None:
    """Log a saved model folder as a pyfunc model (the folder plus MODEL_CODE) to the run."""
    example = pd.DataFrame({"premise": ["오늘은 비가 온다."], "hypothesis": ["날씨가 맑다."]})
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(stage_model_code(Path(tmp)))],
            pip_requirements=model_requirements(),
            input_example=example,
            # MLflow would record this process's absolute script path here
            tags={"mlflow.source.name": redact(source_name())},
        )
