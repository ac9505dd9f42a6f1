"""Prefect orchestration for real: the flow on the ephemeral API (retries, lock, failure),
and a scheduled deployment run by a process worker against a `prefect server` on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import requests
import yaml
from mlflow.tracking import MlflowClient

from devtools.sandbox import Server, free_port, make_project, project_env, run_module
from klue_nli.core.params import load_params
from klue_nli.data.feedback import FeedbackStore
from klue_nli.data.klue import read_split, split_by_premise
from tests.conftest import ROOT
from tests.pretrained import NEGATION, write_transfer_task

STAGES = ("download", "featurize", "train", "evaluate")
# Quick recipe, shrunk further so each run takes seconds.
FAST = {
    "train.max_steps": 12,
    "model.random.hidden_size": 32,
    "model.random.intermediate_size": 64,
    "data.retries": 0,
    "data.backoff_s": 0.05,
}


def prefect_env(tmp_path, **extra) -> dict:
    env = project_env(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
        # the temporary API server starts in seconds, but a loaded 2-core machine can take
        # longer than Prefect's default wait
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        BENTOML_HOME=str(tmp_path / "bentoml"),
        **extra,
    )
    env.pop("PREFECT_API_URL", None)
    return env


def flow_once(project, env, params: dict, timeout=600) -> subprocess.CompletedProcess:
    """Run the flow in its own process and print a JSON summary of its task runs."""
    env = {**env, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "flow_probe.py"), json.dumps(params)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("SUMMARY "))


def test_download_retries_then_the_flow_completes(tmp_path, loopback, kcbert):
    env = prefect_env(tmp_path, KLUE_NLI_MIRROR=loopback.url, KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    loopback.faults["klue-nli-v1.1_train.json"] = [503, 503]  # fails twice, then answers
    fast = {**FAST, "data.retries": 2}  # the stage's own retries: the one retry layer
    proc = flow_once(project, env, {"recipe": "quick", "set_params": fast, "build_bento": False})
    result = summary(proc)
    assert result["state"] == "COMPLETED", result
    names = [t["name"] for t in result["tasks"]]
    stages = [n for n in names if n in ("download", "featurize", "train", "evaluate")]
    assert stages == ["download", "featurize", "train", "evaluate"]
    download = result["tasks"][names.index("download")]
    assert download["run_count"] == 1  # the task itself never retried ...
    assert loopback.hits["klue-nli-v1.1_train.json"] == 3  # ... the stage did, twice
    assert any(n.startswith("register_and_promote") for n in names)
    # DVC recorded the run: a plain `dvc status` finds nothing to do
    status = run_module(project, env, "dvc", "status")
    assert "up to date" in status, status
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["train"]["max_steps"] == 12 and params["model"]["init"] == "random"
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_model_version_by_alias("klue-nli", "champion").version


def test_a_failed_stage_fails_the_flow_with_its_message_and_promotes_nothing(
    tmp_path, loopback, kcbert
):
    env = prefect_env(tmp_path, KLUE_NLI_MIRROR=loopback.url, KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    params = {
        "recipe": "quick",
        "build_bento": False,
        "set_params": {**FAST, "featurize.max_seq_length": 512},
    }
    result = summary(flow_once(project, env, params))
    assert result["state"] == "FAILED"
    assert "featurize: error: featurize.max_seq_length: 512 exceeds" in result["message"]
    assert not any(t["name"].startswith("register") for t in result["tasks"])
    assert (
        not (project / "mlflow.db").exists()
        or not MlflowClient(f"sqlite:///{project / 'mlflow.db'}").search_registered_models()
    )


def test_second_concurrent_run_is_refused(tmp_path, kcbert, klue_dir):
    from filelock import FileLock

    env = prefect_env(tmp_path, KLUE_NLI_MIRROR=str(klue_dir), KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    with FileLock(project / ".pipeline.lock"):  # as a running flow holds it
        result = summary(flow_once(project, env, {"recipe": "quick", "set_params": FAST}))
    assert result["state"] == "FAILED"
    assert "another pipeline run holds .pipeline.lock" in result["message"]
    assert result["tasks"] == []


def test_scheduled_deployment_runs_on_a_process_worker(tmp_path, loopback, kcbert):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(tmp_path, KLUE_NLI_MIRROR=loopback.url, KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    server = Server(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        f"{api}/health",
        tmp_path / "prefect-server.log",
        project,
        env,
    )
    worker = None
    try:
        server.wait_ready(timeout=180)
        env["PREFECT_API_URL"] = api

        def module(*args: str) -> str:
            return run_module(project, env, *args, timeout=120)

        module("prefect", "work-pool", "create", "klue-nli", "--type", "process")
        deployed = module(
            "klue_nli.cli",
            "deploy",
            "--params",
            json.dumps({"recipe": "quick", "set_params": FAST}),
        )
        assert "klue-nli-training/weekly-retraining" in deployed
        worker = Server(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "klue-nli"],
            f"{api}/health",
            tmp_path / "worker.log",
            project,
            env,
        )
        out = module("prefect", "deployment", "run", "klue-nli-training/weekly-retraining")
        flow_run_id = next(ln.split(":")[-1].strip() for ln in out.splitlines() if "UUID" in ln)
        # Ask the server's REST API directly, as the Prefect UI does.
        deadline = time.time() + 480
        while True:
            run = requests.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert time.time() < deadline, worker.tail()
            time.sleep(2)
        assert run["state"]["type"] == "COMPLETED", worker.tail()
        deployment = requests.get(f"{api}/deployments/{run['deployment_id']}", timeout=10).json()
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * 1"]
        tasks = requests.post(
            f"{api}/task_runs/filter",
            json={
                "flow_runs": {"id": {"any_": [flow_run_id]}},
                "sort": "EXPECTED_START_TIME_ASC",
                "limit": 50,
                "offset": 0,
            },
            timeout=10,
        ).json()
        stages = [t["name"] for t in tasks if t["name"] in STAGES]
        assert stages == list(STAGES)
        artifacts = requests.post(
            f"{api}/artifacts/filter",
            json={
                "artifacts": {"key": {"any_": ["klue-nli-training-report"]}},
                "limit": 10,
                "offset": 0,
            },
            timeout=10,
        ).json()
        assert artifacts and "Promotion: version 1 promoted" in artifacts[0]["data"]
        champion = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_model_version_by_alias(
            "klue-nli", "champion"
        )
        assert champion.version
    finally:
        if worker:
            worker.stop()
        server.stop()


def test_the_schedule_learns_from_feedback_and_the_gate_refuses_a_poisoned_model(
    tmp_path, klue_dir, kcbert
):
    """On a task a tiny BERT learns (tests/pretrained.py): the first flow run makes a champion;
    a second with no new accepted feedback runs no stage (its time printed); then 200 accepted
    corrections with the task's labels flipped are exported by the flow, featurize counts them
    as their own source, and the model trained on them is refused by the promotion gate: the
    champion stays."""
    task = write_transfer_task(klue_dir, tmp_path / "task")
    env = prefect_env(tmp_path, KLUE_NLI_MIRROR=str(task), KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    learnable = {
        **FAST,
        "train.max_steps": -1,
        "train.epochs": 3,
        "train.batch_size": 32,
        "train.learning_rate": 3e-3,
        "model.random.hidden_size": 64,
        "model.random.intermediate_size": 128,
    }
    run = {"recipe": "quick", "set_params": learnable, "build_bento": False}
    first = summary(flow_once(project, env, run))
    assert first["state"] == "COMPLETED", first
    champion = first["result"]["promotion"]["version"]
    assert first["result"]["promotion"]["promoted"], first["result"]["promotion"]
    assert first["result"]["feedback"]["pairs"] == 0

    started = time.perf_counter()
    again = summary(flow_once(project, env, run))
    took = time.perf_counter() - started
    print(f"no-op flow run: {took:.1f} s")
    assert again["state"] == "COMPLETED", again
    assert set(again["result"]["stages"].values()) == {"up to date"}, again["result"]["stages"]
    assert again["result"]["promotion"]["version"] == champion  # nothing new registered

    # 200 corrections that teach the task backwards: a premise "entails" its negation, and
    # "contradicts" itself, on premises of the training split
    _, validation = split_by_premise(
        read_split(project / "data/raw", "train"),
        load_params(project / "params.yaml").data.val_fraction,
    )
    held = {e.premise for e in validation}
    train_premises = sorted({e.premise for e in read_split(project / "data/raw", "train")} - held)
    store = FeedbackStore(f"sqlite:///{project / 'feedback/feedback.db'}")
    ids = []
    for premise in train_premises[:100]:
        ids.append(store.add(premise, NEGATION + premise, "entailment", answered="contradiction"))
        ids.append(
            store.add(premise, premise.rstrip(".!? "), "contradiction", answered="entailment")
        )
    assert store.review(ids, "accepted") == 200

    poisoned = summary(flow_once(project, env, run))
    assert poisoned["state"] == "COMPLETED", poisoned
    result = poisoned["result"]
    assert result["feedback"]["pairs"] == 200
    assert result["stages"]["featurize"] == "ran" and result["stages"]["train"] == "ran"
    meta = json.loads((project / "data/features/meta.json").read_text())
    assert meta["train"]["by_source"]["feedback"] == 200, meta["train"]
    promotion = result["promotion"]
    print("poisoned retrain: " + json.dumps(promotion, default=str))
    assert promotion["version"] != champion and not promotion["promoted"], promotion
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("klue-nli", "champion").version) == champion
