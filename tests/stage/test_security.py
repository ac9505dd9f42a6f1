"""What the pipeline records and the tools it runs keep nothing private: MLflow's records of a
real run hold no local path or secret, and the Makefile's quiet defaults reach every tool
while a user's own setting wins."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT

LOCAL_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|root|work|Users|var|opt|mnt|srv)/")


@pytest.mark.slow
def test_mlflow_records_hold_no_local_path_or_secret(workdir, make_params, pipeline, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButSecret")
    params = make_params(train={"max_steps": 10})
    assert Path(params.data.mirror).is_absolute()  # the case that must be redacted
    version = pipeline(params)["version"]

    client = MlflowClient()
    run = client.get_run(version.run_id)
    records = {
        **{f"run param {k}": v for k, v in run.data.params.items()},
        **{f"run tag {k}": v for k, v in run.data.tags.items()},
        **{f"version tag {k}": v for k, v in version.tags.items()},
    }
    for model in mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    ):
        records.update({f"model tag {k}": v for k, v in model.tags.items()})
        records.update({f"model param {k}": v for k, v in model.params.items()})
    assert len(records) > 20
    leaks = {
        key: value
        for key, value in records.items()
        if LOCAL_PATH.search(str(value))
        or str(workdir) in str(value)
        or "hf_NotARealToken" in str(value)
    }
    assert leaks == {}
    assert records["run param data.mirror"] == f"<local>/{Path(params.data.mirror).name}"

    # the logged model is code plus safetensors: nothing for pickle to run on load
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}"))
    names = [p.name for p in local.rglob("*") if p.is_file()]
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".pt", ".bin", ".joblib"))]
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # loaded from code


def test_telemetry_is_off_by_default_and_a_users_own_setting_wins(tmp_path):
    """The Makefile exports quiet.env to every tool it runs, as defaults: unset, each is the
    project's value; set by the user, the user's value reaches the tool."""
    from klue_nli.core.env import quiet_defaults

    probe = tmp_path / "probe.mk"
    names = sorted(quiet_defaults())
    probe.write_text("probe:\n\t@" + " ".join(f'echo "{n}=$${n}";' for n in names) + "\n")

    def exported(**env: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in quiet_defaults()}
        proc = subprocess.run(
            ["make", "-s", "-f", "Makefile", "-f", str(probe), "probe"],
            cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return dict(line.split("=", 1) for line in proc.stdout.splitlines())

    assert exported() == quiet_defaults()
    mine = exported(DO_NOT_TRACK="false", MLFLOW_DISABLE_TELEMETRY="false")
    assert mine["DO_NOT_TRACK"] == "false" and mine["MLFLOW_DISABLE_TELEMETRY"] == "false"
    assert mine["HF_HUB_DISABLE_TELEMETRY"] == quiet_defaults()["HF_HUB_DISABLE_TELEMETRY"]
