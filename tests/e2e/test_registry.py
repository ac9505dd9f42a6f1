"""Registry and promotion against a real `mlflow server` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from devtools.sandbox import Server, free_port
from klue_nli.core.errors import UserError
from klue_nli.core.manifest import PROVENANCE_FILE, weights_sha256, write_manifest
from klue_nli.inference.bento import BENTO_MODEL
from klue_nli.registry import tracking
from klue_nli.registry.client import CHAMPION, PREVIOUS
from klue_nli.registry.export import export_champion
from klue_nli.registry.promotion import promote, rollback
from klue_nli.registry.register import register, register_run
from tests.conftest import ROOT, default_params, write_params
from tests.helpers import KillingProxy
from tests.unit.test_policy import LABELS, metrics

NAME = "klue-nli"


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    port = free_port()
    server = Server(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        f"http://127.0.0.1:{port}/health",
        tmp_path / "mlflow-server.log",
        tmp_path,
        dict(os.environ),
    )
    try:
        server.wait_ready()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
        yield server
    finally:
        server.stop()


def candidate(
    model_dir: Path, acc: float, name: str = NAME, dev_sha256: str = "d" * 64, **per_class: float
):
    mlflow.set_experiment("klue-nli")
    with mlflow.start_run() as run:
        pass
    tracking.log_model(run.info.run_id, model_dir)
    m = metrics(acc, **per_class)
    report = {
        "accuracy": acc,
        "macro_f1": sum(m[f"f1.{label}"] for label in LABELS) / 3,
        "per_class": {label: {"f1": m[f"f1.{label}"]} for label in LABELS},
        "baselines": {"majority": 0.33},
        "data": {"dev_sha256": dev_sha256},
        "behaviour": {"overall": {"pass_rate": 0.5, "n": 330}},
        "served": {
            "runtime": "openvino",
            "quantize": "none",
            "accuracy": acc,
            "argmax_agreement": 1.0,
            "ece": 0.02,
        },
    }
    provenance = {"mlflow_run_id": run.info.run_id, "git_commit": "abc"}
    return register_run(name, provenance, report, default_params().registry)


def aliases(name: str = NAME) -> dict[str, str]:
    return dict(MlflowClient().get_registered_model(name).aliases)


@pytest.mark.slow
def test_promotion_lifecycle(mlflow_server, model_dir, make_params):
    params = make_params()
    v1 = candidate(model_dir, 0.50)
    assert v1.tags["eval.accuracy"] == "0.5" and v1.tags["git_commit"] == "abc"
    assert candidate(model_dir, 0.50).version != v1.version  # a new run is a new version
    _, decision = promote(params, v1.version)
    assert decision.promote and aliases() == {CHAMPION: v1.version}

    worse = candidate(model_dir, 0.45)
    version, decision = promote(params, worse.version)
    assert not decision.promote
    assert aliases() == {CHAMPION: v1.version}  # champion kept
    assert version.tags["promotion.decision"] == "rejected"
    assert (
        "served accuracy > 0.5000 (champion + margin): 0.4500 (fails)"
        in (version.tags["promotion.reasons"])
    )

    better = candidate(model_dir, 0.60)
    version, decision = promote(params)  # newest by default
    assert version.version == better.version and decision.promote
    assert aliases() == {CHAMPION: better.version, PREVIOUS: v1.version}
    assert version.tags["promotion.compared_to"] == v1.version
    # the model card shows every rule with its figure and verdict
    card = version.description.split("### Promotion")[1]
    assert "Decision: **promoted**" in card
    assert "- served accuracy > 0.5000 (champion + margin): 0.6000 (holds)" in card

    restored = rollback(params)
    assert restored.version == v1.version
    assert aliases() == {CHAMPION: v1.version}
    assert MlflowClient().get_model_version(NAME, better.version).tags["rolled_back"] == "true"
    with pytest.raises(UserError, match="no 'previous' version"):
        rollback(params)

    # a version evaluated on another dev file is not compared at all: no alias moves
    other = candidate(model_dir, 0.99, dev_sha256="e" * 64)
    version, decision = promote(params, other.version)
    assert not decision.promote
    assert "evaluated on the champion's dev file: eeeeeeeeeeee" in decision.reasons[-1]
    assert aliases() == {CHAMPION: v1.version}


@pytest.mark.slow
def test_racing_promotions_leave_one_consistent_champion(mlflow_server, model_dir, make_params):
    params = make_params()
    base = candidate(model_dir, 0.50)
    promote(params, base.version)
    good, best = candidate(model_dir, 0.60), candidate(model_dir, 0.70)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "klue_nli.cli",
                "promote",
                "--version",
                v.version,
                "--params",
                str(ROOT / "params.yaml"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for v in (good, best)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    final = aliases()
    assert final[CHAMPION] == best.version  # whatever the order, the best one wins
    assert final[PREVIOUS] in (base.version, good.version)
    client = MlflowClient()
    decisions = {
        v.version: client.get_model_version(NAME, v.version).tags["promotion.decision"]
        for v in (good, best)
    }
    assert decisions[best.version] == "promoted"
    # good was promoted only if it ran first, and then it must be what best replaced
    assert (decisions[good.version] == "promoted") == (final[PREVIOUS] == good.version)


def registry_write(method: str, path: str) -> bool:
    """MLflow REST calls that change aliases or version tags (what promote writes)."""
    return method in ("POST", "DELETE") and (
        "/registered-models/alias" in path or "/model-versions/set-tag" in path
    )


PROMOTION_WRITES = 7  # two aliases, then five tags


@pytest.mark.slow
def test_promotion_killed_before_each_of_its_writes_leaves_one_champion(
    mlflow_server, model_dir, make_params, tmp_path
):
    """promote writes: alias previous, alias champion, then 5 tags (the decision last).
    SIGKILL it before each write k in turn: there is always exactly one champion (the old one
    until the champion alias moves at write 2), and promoting again completes the same
    promotion with a full record. An uninterrupted promotion through the proxy then shows
    that these are all of its writes."""
    server_port = int(os.environ["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1])
    proxy = KillingProxy(server_port, registry_write)

    def promote_through_proxy(version: str, params_file: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": proxy.url}
        return subprocess.Popen(
            [sys.executable, "-m", "klue_nli.cli", "promote", "--version", version,
             "--params", str(params_file)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    name = "killed"
    params = make_params(registry={"model_name": name})
    params_file = write_params(tmp_path / f"{name}.yaml", params)
    old = candidate(model_dir, 0.50, name=name)
    promote(params, old.version)
    try:
        for kill_at in range(1, PROMOTION_WRITES + 1):  # each time a better candidate
            new = candidate(model_dir, 0.50 + 0.01 * kill_at, name=name)
            victim = promote_through_proxy(new.version, params_file)
            proxy.arm(victim, kill_at)
            output = victim.communicate(timeout=180)[0]
            assert victim.returncode == -signal.SIGKILL, output  # it died at write kill_at
            assert len(proxy.writes) == kill_at, proxy.writes
            state = aliases(name)
            assert state[CHAMPION] == (old.version if kill_at <= 2 else new.version), kill_at

            version, decision = promote(params, new.version)  # the rerun, straight to MLflow
            assert decision.promote, decision
            assert aliases(name) == {CHAMPION: new.version, PREVIOUS: old.version}
            tags = version.tags
            assert tags["promotion.decision"] == "promoted"
            assert {"promotion.reasons", "promotion.compared_to", "promotion.at"} <= set(tags)
            old = new
        newest = candidate(model_dir, 0.90, name=name)
        whole = promote_through_proxy(newest.version, params_file)
        proxy.arm(whole, 0)  # never killed
        output = whole.communicate(timeout=180)[0]
        assert whole.returncode == 0, output
        assert len(proxy.writes) == PROMOTION_WRITES, proxy.writes
    finally:
        proxy.stop()


def damage_artifact(root: Path, version, how: str) -> None:
    model_id = version.source.rsplit("/", 1)[-1]  # models:/<logged model id>
    [weights] = [p for p in root.rglob("model.safetensors") if model_id in str(p)]
    if how == "missing":
        weights.unlink()
    else:
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte: still loads, but is not the model
        weights.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["corrupt", "missing"])
def test_a_damaged_artifact_is_refused_at_promotion_and_export(
    mlflow_server, model_dir, make_params, tmp_path, monkeypatch, how
):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    params = make_params()
    good = candidate(model_dir, 0.50)
    bad = candidate(model_dir, 0.70)
    damage_artifact(tmp_path / "artifacts", bad, how)
    promote(params, good.version)
    state = "corrupt \\(sha256 mismatch\\)" if how == "corrupt" else "missing"
    with pytest.raises(
        UserError, match=rf"v{bad.version}: not promoted: .*model.safetensors is {state}"
    ):
        promote(params, bad.version)
    assert aliases() == {CHAMPION: good.version}  # the champion is untouched
    refused = MlflowClient().get_model_version(NAME, bad.version).tags
    assert refused["promotion.decision"] == "refused"

    # damaged after promotion: export refuses it and the BentoML store stays empty
    damage_artifact(tmp_path / "artifacts", good, how)
    with pytest.raises(UserError, match=rf"model.safetensors is {state}"):
        export_champion(params)
    import bentoml

    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.get(BENTO_MODEL)


@pytest.mark.slow
def test_export_tells_apart_champions_of_two_tracking_stores(
    model_dir, make_params, tmp_path, monkeypatch
):
    """v1 of one store and v1 of another are different models: the second export is not a
    no-op, while exporting the same champion again is."""
    params = make_params()
    tags = []
    for store in ("one", "two"):
        uri = f"sqlite:///{tmp_path / store}.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        version = candidate(model_dir, 0.5)
        promote(params, version.version)
        assert str(version.version) == "1"
        tags.append(export_champion(params))
        assert export_champion(params) == tags[-1]  # the same champion: nothing to do
    assert tags[0] != tags[1]


@pytest.mark.slow
def test_register_refuses_another_models_metrics_and_refreshes_a_new_evaluation(
    mlflow_server, model_dir, make_params, workdir
):
    """eval.json names the model it scored (run id, weights checksum): metrics left from the
    previous model (a train without evaluate) are refused in one line, and evaluate run again
    on a registered model (say behaviour.py changed) refreshes its version's tags."""
    params = make_params()
    mlflow.set_experiment("klue-nli")
    with mlflow.start_run() as run:
        pass
    run_id = run.info.run_id
    tracking.log_model(run_id, model_dir)
    folder = workdir / params.paths.model_dir
    shutil.copytree(model_dir, folder)
    (folder / PROVENANCE_FILE).write_text(json.dumps({"mlflow_run_id": run_id}))
    write_manifest(folder)
    m = metrics(0.5)
    report = {
        "accuracy": 0.5,
        "macro_f1": 0.5,
        "per_class": {label: {"f1": m[f"f1.{label}"]} for label in LABELS},
        "model": {"mlflow_run_id": run_id, "weights_sha256": weights_sha256(folder)},
    }
    eval_file = workdir / params.paths.eval_metrics
    eval_file.parent.mkdir(parents=True)
    eval_file.write_text(json.dumps(report))
    first = register(params)
    assert first.tags["eval.accuracy"] == "0.5" and "eval.served.accuracy" not in first.tags

    reevaluated = {
        **report,
        "accuracy": 0.55,
        "served": {"runtime": "onnxruntime", "accuracy": 0.55, "argmax_agreement": 1.0},
    }
    eval_file.write_text(json.dumps(reevaluated))
    again = register(params)
    assert again.version == first.version  # the same run: the same version, refreshed
    assert again.tags["eval.accuracy"] == "0.55"
    assert again.tags["eval.served.accuracy"] == "0.55"
    assert again.tags["served.runtime"] == "onnxruntime"
    assert "0.55" in again.description  # the model card too

    for stale in (
        {"mlflow_run_id": "0" * 32, "weights_sha256": weights_sha256(folder)},
        {"mlflow_run_id": run_id, "weights_sha256": "f" * 64},
    ):
        eval_file.write_text(json.dumps({**reevaluated, "model": stale}))
        with pytest.raises(UserError, match=r"scored run .* not the model in .* rerun evaluate"):
            register(params)
    assert MlflowClient().get_model_version(NAME, first.version).tags["eval.accuracy"] == "0.55"
