"""The end-to-end tier's shared server: one `bentoml serve` of a tiny champion for the
service's test modules (test_feedback_service.py, test_service.py)."""

from __future__ import annotations

import json
import os

import pytest

from devtools.sandbox import bentoml_server, free_port
from klue_nli.data.klue import read_split
from klue_nli.inference.predictor import Predictor
from klue_nli.registry.export import export_champion
from klue_nli.registry.promotion import promote
from service.feedback import STORE_ENV
from tests.conftest import ROOT, tiny_params
from tests.helpers import bentoml_home
from tests.pretrained import write_transfer_task


@pytest.fixture(scope="package")
def served(tmp_path_factory, klue_dir, kcbert, pipeline):
    """A tiny model trained by the real stages, registered, promoted and exported, served on a
    free loopback port, its corrections stored in a scratch SQLite file."""
    work = tmp_path_factory.mktemp("service")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        mp.setenv("BENTOML_HOME", str(work / "bentoml"))
        mp.setenv("HF_HOME", str(work / "hf"))
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        # a task the tiny BERT learns (tests/pretrained.py, about 65 % on its dev): a model
        # whose answers depend on the pair, so drift of its answers can be seen
        task = write_transfer_task(klue_dir, work / "task")
        learn = {"max_steps": -1, "epochs": 3, "batch_size": 32, "learning_rate": 3e-3}
        params = tiny_params(
            str(task),
            kcbert,
            train=learn,
            model={"random": {"hidden_size": 64, "intermediate_size": 128}},
            # a target within this model's reach: some answers sure, some unsure
            calibration={"target_accuracy": 0.75},
        )
        version = pipeline(params)["version"]
        promote(params, version.version)
        with bentoml_home(work / "bentoml"):  # a module fixture: pin it here too
            tag = export_champion(params)
        assert tag.startswith("klue-nli:")
        port = free_port()
        feedback_url = f"sqlite:///{work / 'feedback.db'}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), STORE_ENV: feedback_url}
        # no --host: the default must be loopback
        server = bentoml_server(ROOT, port, work / "bentoml-serve.log", env)
        try:
            server.wait_ready(timeout=180)
            dev = read_split(work / "data/raw", "dev")[:64]
            # the model as the service runs it (serve.quantize), as evaluate's `served` reports
            serve = params.serve
            predictor = Predictor.from_dir(
                work / "models/best", quantize=serve.quantize, runtime=serve.runtime
            )
            probs, truncated = predictor.predict_proba_truncated(
                [e.premise for e in dev], [e.hypothesis for e in dev]
            )
            yield {
                "url": f"http://127.0.0.1:{port}",
                "server": server,
                "dev": dev,
                "probs": probs,
                "truncated": truncated.tolist(),
                "labels": predictor.labels,
                "unsure_below": predictor.calibration.unsure_below,
                # fp32 runtimes give a pair the same probabilities in any batch; bf16 rounds
                # them differently for another batch shape (8 bits of mantissa)
                "atol": 1e-5 if predictor.quantize == "none" else 2e-2,
                "version": str(version.version),
                "bentoml_home": work / "bentoml",
                "bento_model": tag,
                "feedback_url": feedback_url,
                "raw_dir": work / "data/raw",
                # each test has its own store (tests/conftest.py): this is the champion's
                "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                "log": work / "bentoml-serve.log",
                # the variant evaluate measured and recorded (what the service must serve)
                "served": json.loads((work / "metrics/eval.json").read_text())["served"],
            }
        finally:
            server.stop()
            if server.proc.returncode not in (0, -15):
                print(server.tail())
