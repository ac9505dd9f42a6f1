"""Security checks: no unsafe deserialisation in the project's code, loopback-only defaults,
and nothing private (local paths, credentials) in what MLflow records."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from klue_nli.registry import tracking
from klue_nli.registry.register import register
from klue_nli.stages.download import download
from klue_nli.stages.evaluate import evaluate
from klue_nli.stages.featurize import featurize
from klue_nli.stages.train import train
from tests.conftest import ROOT

CODE_DIRS = ("klue_nli", "benchmarks")


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


UNSAFE = {
    "pickle.load",
    "pickle.loads",
    "cloudpickle.load",
    "joblib.load",
    "dill.load",
    "marshal.loads",
    "yaml.unsafe_load",
    "eval",
    "exec",
}


def unsafe_calls(source: str) -> list[str]:
    found = []
    for node, name in calls(ast.parse(source)):
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name in UNSAFE:
            found.append(name)
        elif name == "torch.load" and keywords.get("weights_only") != "True":
            found.append("torch.load without weights_only=True")
        elif name == "yaml.load" and "Safe" not in keywords.get("Loader", ""):
            found.append("yaml.load without a safe Loader")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = "import torch, pickle\ntorch.load(p)\npickle.loads(b)\nyaml.load(s)\n"
    assert len(unsafe_calls(bad)) == 3
    assert unsafe_calls("torch.load(p, weights_only=True)\nyaml.safe_load(s)\n") == []


def test_no_unsafe_deserialisation_in_the_project():
    offenders = {
        str(path.relative_to(ROOT)): found
        for folder in CODE_DIRS
        for path in (ROOT / folder).rglob("*.py")
        if (found := unsafe_calls(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_every_server_default_binds_loopback():
    from klue_nli.service.service import NLIService

    assert NLIService.config["http"]["host"] == "127.0.0.1"
    makefile = (ROOT / "Makefile").read_text()
    team = (ROOT / "devtools/team.py").read_text()
    # every server each file starts: each must be found (a renamed command fails here, not
    # silently), and each line that starts one names the loopback host
    launches = {
        makefile: ("mlflow ui", "prefect server start", "bentoml serve"),
        team: ('"mlflow", "server"', '"prefect", "server", "start"', '"moto.server"'),
    }
    for text, commands in launches.items():
        for command in commands:
            lines = [line for line in text.splitlines() if command in line]
            assert lines, f"{command!r} is started nowhere: update this test"
            for line in lines:
                assert "127.0.0.1" in line, line
        assert "0.0.0.0" not in text


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("/home/me/data/kcbert-base", "<local>/kcbert-base"),
        ("file:///srv/mirror/klue-nli", "<local>/klue-nli"),
        ("~/klue", "<local>/klue"),
        ("https://user:s3cret@mirror.example/klue", "https://mirror.example/klue"),
        ("https://raw.githubusercontent.com/KLUE-benchmark/KLUE", None),
        ("beomi/kcbert-base", None),
        ("data/raw", None),
    ],
)
def test_redaction_of_values_before_they_are_logged(value, logged):
    assert tracking.redact(value) == (value if logged is None else logged)


LOCAL_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|root|work|Users|var|opt|mnt|srv)/")


@pytest.mark.slow
def test_mlflow_records_hold_no_local_path_or_secret(workdir, make_params, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenButSecret")
    params = make_params(train={"max_steps": 10})
    assert Path(params.data.mirror).is_absolute()  # the case that must be redacted
    for stage in (download, featurize, train, evaluate):
        stage(params)
    version = register(params)

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
    import os
    import subprocess

    from klue_nli.core.stage_runner import quiet_defaults

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
