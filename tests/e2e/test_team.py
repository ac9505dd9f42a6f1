"""Team mode with real servers on loopback: PostgreSQL, an S3 API server (moto), an MLflow
tracking server (PostgreSQL + S3) and a Prefect server (PostgreSQL), started by the tests."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from devtools.sandbox import Server, bentoml_server, free_port, make_project, project_env
from devtools.team import BUCKET, REGION, TeamStack
from klue_nli.core.params import load_params
from klue_nli.data.klue import read_split
from klue_nli.inference.predictor import Predictor
from klue_nli.registry.client import CHAMPION, PREVIOUS
from klue_nli.registry.promotion import promote
from klue_nli.registry.retention import logged_model_id, purge_artifacts, retire_old_versions
from tests.conftest import ROOT
from tests.e2e.test_flows import FAST as FAST_FLOW
from tests.e2e.test_pipeline import sh
from tests.e2e.test_registry import NAME, aliases, candidate
from tests.helpers import Webhook

KEPT = "klue-nli-retention"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    team = TeamStack(tmp_path_factory.mktemp("team")).start(env)
    yield team
    team.stop()


@pytest.fixture
def shared(stack, monkeypatch):
    """This test process as a client of the shared servers: only environment variables."""
    for key, value in stack.client_env().items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(stack.client_env()["MLFLOW_TRACKING_URI"])
    return stack


def s3_client(stack: TeamStack):
    """An S3 client of the stack's object store, signing with the stack's key."""
    return boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        region_name=REGION,
        aws_access_key_id=stack.access_key,
        aws_secret_access_key=stack.secret_key,
    )


def s3_text(stack: TeamStack) -> str:
    """Every object in the bucket (MLflow's artifacts, DVC's cache), as text."""
    s3 = s3_client(stack)
    bodies = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in s3_keys(stack)]
    return "\n".join(body.decode("utf-8", "replace") for body in bodies)


def s3_keys(stack: TeamStack, prefix: str = "") -> list[str]:
    s3 = s3_client(stack)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_retention_keeps_the_newest_and_the_aliases_and_empties_the_object_store(
    shared,
    model_dir,
    make_params,
    monkeypatch,
):
    # its own registered model: the servers are shared with the two-machine test
    params = make_params(registry={"keep_versions": 2, "model_name": KEPT})
    versions = [candidate(model_dir, 0.40 + 0.01 * i, name=KEPT) for i in range(6)]  # v1..v6
    promote(params, versions[0].version)  # champion v1
    promote(params, versions[2].version)  # champion v3, previous v1
    assert aliases(KEPT) == {CHAMPION: versions[2].version, PREVIOUS: versions[0].version}
    model_ids = {v.version: logged_model_id(v) for v in versions}
    keys = s3_keys(shared, "mlflow/")
    for mid in model_ids.values():  # every model's files are in the object store
        assert any(mid in key for key in keys), (mid, keys[:5])

    # model cards: the version's description and the registered model's policy
    c = MlflowClient()
    card = c.get_model_version(KEPT, versions[0].version).description
    assert "dev file sha256: `" + "d" * 64 in card and "dev accuracy: 0.4000" in card
    assert "baseline majority: 0.3300" in card and "git commit: `abc`" in card
    policy = c.get_registered_model(KEPT).description
    assert "keeps the newest 5 versions" in policy and "`champion`" in policy

    gone = retire_old_versions(params)
    assert [v for v, _ in gone] == [versions[1].version, versions[3].version]  # v2, v4
    left = {v.version for v in c.search_model_versions(f"name='{KEPT}'")}
    assert left == {versions[i].version for i in (0, 2, 4, 5)}  # aliases + newest 2
    assert retire_old_versions(params) == []  # nothing more to do
    assert "keeps the newest 2 versions" in c.get_registered_model(KEPT).description

    # mlflow gc, told the server's database, deletes the retired models' files for good
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", shared.pg_url("mlflow", "postgresql+psycopg2"))
    processes = CommandLines()
    purge_artifacts([mid for _, mid in gone])
    seen = processes.stop()
    assert "mlflow gc" in seen and shared.password not in seen  # in gc's environment only
    keys = s3_keys(shared, "mlflow/")
    for version, mid in model_ids.items():
        present = any(mid in key for key in keys)
        assert present == (version in left), (version, mid)

    # no credential reached params, tags, descriptions or artifacts
    everything = [c.get_registered_model(KEPT).description]
    for v in c.search_model_versions(f"name='{KEPT}'"):
        everything += [v.description, json.dumps(v.tags)]
    for run in c.search_runs([e.experiment_id for e in c.search_experiments()]):
        everything += [json.dumps(run.data.params), json.dumps(run.data.tags)]
    text = "\n".join(everything)
    assert all(secret not in text for secret in shared.secrets())


def test_every_server_asks_who_you_are_and_no_secret_is_on_a_command_line(shared):
    """Anonymous or wrong credentials are refused by MLflow (basic auth), Prefect (its API
    auth string), S3 (signatures checked) and PostgreSQL; the right ones are let in. No
    server of the stack has a credential in its command line (which `ps` shows anyone)."""
    import psycopg2

    env = shared.client_env()
    mlflow_api = f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    login = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    assert requests.get(mlflow_api, timeout=10).status_code == 401
    assert requests.get(mlflow_api, auth=(login[0], "wrong"), timeout=10).status_code == 401
    assert requests.get(mlflow_api, auth=login, timeout=10).status_code == 200
    flows = f"{env['PREFECT_API_URL']}/flows/filter"
    assert requests.post(flows, json={}, timeout=10).status_code == 401
    assert requests.post(flows, json={}, auth=("klue", "wrong"), timeout=10).status_code == 401
    assert requests.post(flows, json={}, auth=prefect_auth(), timeout=10).status_code == 200
    for secret in ("wrong", None):
        s3 = boto3.client(
            "s3",
            endpoint_url=shared.s3_endpoint,
            region_name=REGION,
            aws_access_key_id=shared.access_key if secret else "AKIAEXAMPLEEXAMPLE00",
            aws_secret_access_key=secret or "anything",
        )
        with pytest.raises(
            s3.exceptions.ClientError, match=r"SignatureDoesNotMatch|InvalidAccessKeyId"
        ):
            s3.list_objects_v2(Bucket=BUCKET)
    assert isinstance(s3_keys(shared), list)  # the stack's own key is let in
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(shared.pg_url("mlflow").replace(shared.password, "wrong"))
    for name, server in shared.servers.items():
        line = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert not [s for s in shared.secrets() if s in line], name


class CommandLines:
    """Every process's command line, sampled five times a second while a test runs (what `ps`
    would have shown any local user)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):  # the process ended meanwhile
                    self.seen.add(
                        cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                    )
            self._stop.wait(0.2)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return "\n".join(sorted(self.seen))


def prefect_api_text(api: str) -> dict[str, str]:
    """What the Prefect server holds that a user reads: artifacts (the flow's report), logs,
    deployments (their parameters) and blocks (secret fields as the API shows them)."""
    texts = {}
    for kind in ("artifacts", "logs", "deployments", "block_documents"):
        rows: list = []
        while True:
            page = prefect_api(api, "POST", f"/{kind}/filter", {"limit": 200, "offset": len(rows)})
            rows += page
            if len(page) < 200:
                break
        texts[kind] = json.dumps(rows, ensure_ascii=False)
    return texts


def mlflow_text() -> str:
    """Every run's params and tags and every model version's card, as the tracking server
    gives them."""
    c = MlflowClient()
    rows = [
        json.dumps([run.data.params, run.data.tags])
        for run in c.search_runs([e.experiment_id for e in c.search_experiments()])
    ]
    for model in c.search_registered_models():
        rows.append(model.description or "")
        for version in c.search_model_versions(f"name='{model.name}'"):
            rows += [version.description or "", json.dumps(version.tags)]
    return "\n".join(rows)


def files_text(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()
    )


def prefect_auth() -> tuple[str, str]:
    """The Prefect server's login, as PREFECT_API_AUTH_STRING gives it to clients."""
    user, _, password = os.environ["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


def prefect_api(api: str, method: str, path: str, body: dict | None = None) -> object:
    answer = requests.request(method, f"{api}{path}", json=body, auth=prefect_auth(), timeout=10)
    answer.raise_for_status()
    return answer.json()


def flow_run_state(api: str, flow_run_id: str, until: tuple[str, ...], timeout: float) -> dict:
    deadline = time.time() + timeout
    while True:
        run = prefect_api(api, "GET", f"/flow_runs/{flow_run_id}")
        if run["state"]["type"] in until or time.time() > deadline:
            return run
        time.sleep(1)


def trigger(cwd: Path, env: dict, *extra: str) -> str:
    out = sh(
        [
            sys.executable,
            "-m",
            "prefect",
            "deployment",
            "run",
            "klue-nli-training/team-retraining",
            *extra,
        ],
        cwd,
        env,
    ).stdout
    return next(line.split(":")[-1].strip() for line in out.splitlines() if "UUID" in line)


DONE = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def test_two_machines_share_only_the_servers(shared, tmp_path, kcbert, klue_dir):
    """Machine A deploys prefect.yaml; a worker in its own folder clones the repository, runs
    the demo recipe against the shared servers and publishes the outputs (DVC remote, git).
    Machine B, a fresh clone, pulls the data, finds the pipeline up to date, exports the
    champion from the shared registry and serves it: the answers are the worker's model's.
    Every secret a team gives (the servers' credentials, the feedback store's password, the
    alert webhook's path) reaches none of git, the object store behind MLflow and DVC, the
    Prefect server (report artifact, logs, deployments, blocks), the worker's log, any
    command line while it all runs, or the Bento."""
    processes = CommandLines()
    webhook_secret = "T0AAA/B0BBB/" + uuid.uuid4().hex  # a chat webhook's path is its secret
    bare = tmp_path / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], tmp_path, os.environ)
    api = shared.client_env()["PREFECT_API_URL"]
    base = project_env(KLUE_NLI_MIRROR=str(klue_dir), KCBERT_DIR=kcbert, **shared.client_env())
    for name in ("PREFECT_HOME", "BENTOML_HOME"):
        base.pop(name, None)

    # machine A: the team's project (with its DVC remote), pushed, then deployed
    env_a = {**base, "PREFECT_HOME": str(tmp_path / "prefect-a"), "KLUE_NLI_GIT_URL": str(bare)}
    a = make_project(ROOT, tmp_path / "a", env_a)
    sh(["dvc", "remote", "add", "-d", "team", shared.dvc_remote], a, env_a)
    sh(["git", "add", "-A"], a, env_a)
    sh(["git", "commit", "-qm", "team remote"], a, env_a)
    sh(["git", "push", "-q", str(bare), "HEAD:main"], a, env_a)
    prefect = [sys.executable, "-m", "prefect"]
    sh([*prefect, "work-pool", "create", "klue-nli", "--type", "process"], a, env_a)
    demo = {"recipe": "quick", "set_params": FAST_FLOW}
    sh([*prefect, "--no-prompt", "deploy", "--all", "--params", json.dumps(demo)], a, env_a)
    hook = Webhook(f"/services/{webhook_secret}")
    alert = {**env_a, "KLUE_NLI_ALERT_WEBHOOK": hook.url}  # not on the command line
    said = sh([sys.executable, "-m", "klue_nli.cli", "deploy"], a, alert).stdout
    assert "automation klue-nli-training-failed" in said and webhook_secret not in said

    # the worker: its own empty folder and Prefect home; the servers are all it shares
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    env_w = {
        **base,
        "PREFECT_HOME": str(tmp_path / "prefect-w"),
        "BENTOML_HOME": str(tmp_path / "bentoml-w"),
        # the team's feedback store, its password in the URL the environment gives
        "KLUE_NLI_FEEDBACK_URL": shared.pg_url("feedback"),
    }
    worker = Server(
        [*prefect, "worker", "start", "--pool", "klue-nli"],
        f"{api}/health",
        tmp_path / "worker.log",
        worker_dir,
        env_w,
    )
    try:
        first = trigger(a, env_a)
        assert flow_run_state(api, first, ("RUNNING", *DONE), 120)["state"]["type"] == "RUNNING"
        second = trigger(a, env_a)  # while the first runs: Prefect's limit cancels it
        state = flow_run_state(api, second, DONE, 120)["state"]
        assert state["type"] == "CANCELLED", state
        run = flow_run_state(api, first, DONE, 600)
        assert run["state"]["type"] == "COMPLETED", worker.tail()
        assert not (a / "models").exists()  # A's folder was never used
        # it ran in a clone of its own and published from there: the commit is the worker's
        log = sh(["git", "log", "--format=%s", "main"], bare, env_a).stdout
        assert log.splitlines()[0] == "Retrained: model version 1 promoted", log

        # a failing run notifies the team's webhook
        bad = trigger(a, env_a, "--param", 'set_params={"train.batch_size": 0}')
        assert flow_run_state(api, bad, DONE, 300)["state"]["type"] == "FAILED"
        deadline = time.time() + 60
        while not hook.received and time.time() < deadline:
            time.sleep(1)
        assert hook.received and "Failed" in json.dumps(hook.received[0]), hook.received
    finally:
        worker.stop()
        hook.close()
    champion = MlflowClient().get_model_version_by_alias(NAME, CHAMPION)
    assert any(logged_model_id(champion) in key for key in s3_keys(shared, "mlflow/"))
    assert any(key.startswith("dvc/") for key in s3_keys(shared))

    # machine B: a fresh clone; only the servers are shared
    env_b = {**base, "BENTOML_HOME": str(tmp_path / "bentoml-b")}
    b = tmp_path / "b"
    sh(["git", "clone", "-q", "-b", "main", str(bare), str(b)], tmp_path, env_b)
    assert not (b / "models/best").exists()
    sh(["dvc", "pull"], b, env_b)
    repro = sh(["dvc", "repro"], b, env_b)
    assert "Running stage" not in repro.stdout, repro.stdout
    dev = read_split(b / "data/raw", "dev")[:8]
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    serve = load_params(b / "params.yaml").serve  # as the clone serves it
    as_served = Predictor.from_dir(
        b / "models/best", runtime=serve.runtime, quantize=serve.quantize
    )
    expected = as_served.predict_proba(premises, hypotheses)
    atol = 1e-5 if as_served.quantize == "none" else 2e-2  # bf16: rounded per batch shape
    sh([sys.executable, "-m", "klue_nli.cli", "export"], b, env_b)
    port = free_port()
    server = bentoml_server(b, port, tmp_path / "serve-b.log", {**env_b, "PYTHONPATH": str(b)})
    try:
        server.wait_ready(timeout=180)
        for i, (p, h) in enumerate(zip(premises, hypotheses, strict=True)):
            body = {"premise": p, "hypothesis": h}
            answer = requests.post(f"http://127.0.0.1:{port}/api", json=body, timeout=30).json()
            labels = ("entailment", "contradiction", "neutral")
            got = [answer["probabilities"][label] for label in labels]
            np.testing.assert_allclose(got, expected[i], atol=atol)
    finally:
        server.stop()

    # machine B packages what it serves: the Bento is searched too
    sh([sys.executable, "-m", "bentoml", "build"], b, {**env_b, "PYTHONPATH": str(b)})
    secrets = [*shared.secrets(), webhook_secret]
    places = {
        "git": sh(["git", "log", "-p", "--all"], bare, env_a).stdout,
        "object store (MLflow, DVC)": s3_text(shared),
        "MLflow runs and versions": mlflow_text(),
        **prefect_api_text(api),
        "worker log": worker.log.read_text(encoding="utf-8", errors="replace"),
        "the Bento": files_text(tmp_path / "bentoml-b" / "bentos"),
        "command lines": processes.stop(),
    }
    # each place was really searched (plain booleans: pytest would diff megabytes of text)
    sizes = {where: len(text) for where, text in places.items()}
    searched = {
        "git": "Retrained" in places["git"],
        "the Bento": "klue-nli" in places["the Bento"],
        "artifacts": "klue-nli-training-report" in places["artifacts"],
        "logs": "Finished in state" in places["logs"],
        "block_documents": "klue-nli-alert-webhook" in places["block_documents"],
    }
    assert all(searched.values()), f"{searched} {sizes}"
    leaked = {where: [s for s in secrets if s in text] for where, text in places.items()}
    assert not {where: found for where, found in leaked.items() if found}, leaked
