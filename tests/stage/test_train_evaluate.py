"""Train and evaluate stages on the real sample with a tiny random BERT, real Lightning and a
real MLflow (SQLite) store; resume after SIGKILL; DDP with 2 CPU processes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from devtools.sandbox import free_port
from klue_nli.core.manifest import CALIBRATION_FILE, MANIFEST_FILE, PROVENANCE_FILE
from klue_nli.data.klue import clean_examples, read_split, split_by_premise
from klue_nli.data.text import InvalidText
from klue_nli.inference.predictor import Predictor
from klue_nli.model.metrics import brier_score, expected_calibration_error
from klue_nli.network.calibration import softmax
from stages.download import download
from stages.evaluate import evaluate
from stages.featurize import featurize
from stages.train import train
from tests.conftest import ROOT, tiny_params, write_params
from tests.pretrained import write_transfer_task
from tests.unit.test_dependencies import _closure, all_imports, normalise


@pytest.fixture
def features(workdir, make_params):
    download(make_params())
    featurize(make_params())
    return workdir


def tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def assert_three_epochs(plots: Path) -> None:
    """One validation row per epoch, at each epoch's last step, none repeated by a resume."""
    val = [int(r["step"]) for r in tsv(plots / "val/acc.tsv")]
    per_epoch = val[0] + 1  # Lightning logs an epoch's last step as (steps so far) - 1
    assert val == [per_epoch * k - 1 for k in (1, 2, 3)], val
    steps = [int(r["step"]) for r in tsv(plots / "train/loss_step.tsv")]
    assert steps == sorted(set(steps)), steps  # rows after the checkpoint were not kept twice


def stage(name: str, params_file: Path, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}", "--params", str(params_file)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_layer_decay_and_ema_train_through_the_stage_and_log_each_rate(features, make_params):
    """train.layer_decay gives one learning rate per depth; each is logged by DVCLive (the
    real stage, as `make sweep` runs it) next to the top groups' rates."""
    metrics = train(make_params(train={"layer_decay": 0.9, "ema_decay": 0.99}))
    assert metrics["steps"] == 8
    logged = json.loads((features / "metrics/train/metrics.json").read_text())
    rates = logged["train"]["lr"]
    assert {"decay", "no_decay", "decay_depth0", "decay_depth2"} <= set(rates), rates
    assert rates["decay_depth0"] < rates["decay_depth2"] < rates["decay"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, klue_dir, kcbert, pipeline):
    """The stages once for this module's tests: a tiny random BERT trained 8 steps on the
    sample, evaluated and served through ONNX Runtime fp32 (whose answers equal PyTorch's to
    1e-5; OpenVINO's: tests/unit/test_openvino.py and the e2e tier), in its own MLflow store."""
    work = tmp_path_factory.mktemp("evaluated")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("KLUE_NLI_MLFLOW_RUN_ID", raising=False)
        mp.setenv("HF_HOME", str(work / "hf"))
        if os.environ.get("KCBERT_DIR"):
            mp.setenv("HF_HUB_OFFLINE", "1")
        mlflow.set_tracking_uri(uri)
        params = tiny_params(
            str(klue_dir), kcbert, serve={"runtime": "onnxruntime", "quantize": "none"}
        )
        done = pipeline(params, register_model=False)
        metrics, report = done["train"], done["evaluate"]
    model_dir = work / "models/best"
    dev = read_split(work / "data/raw", "dev")[:20]
    predictor = Predictor.from_dir(model_dir)
    return {
        "work": work,
        "uri": uri,
        "params": params,
        "metrics": metrics,
        "report": report,
        "saved": json.loads((work / "metrics/eval.json").read_text()),
        "model_dir": model_dir,
        "dev": dev,
        "predictor": predictor,
        "probs": predictor.predict_proba([e.premise for e in dev], [e.hypothesis for e in dev]),
    }


def the_run(evaluated):
    client = MlflowClient(tracking_uri=evaluated["uri"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # train and evaluate log to one run
    return client, runs[0]


def test_train_exports_one_safetensors_folder_and_leaves_no_checkpoint(evaluated):
    work, model_dir = evaluated["work"], evaluated["model_dir"]
    assert evaluated["metrics"]["steps"] == 8
    assert (model_dir / "model.safetensors").exists()
    assert not list(model_dir.glob("*.bin")) and not list(model_dir.glob("*.pkl"))
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "contradiction", "2": "neutral"}
    checkpoints = work / "models/checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_the_predictor_applies_the_one_text_rule(evaluated):
    predictor, dev, probs = evaluated["predictor"], evaluated["dev"], evaluated["probs"]
    assert probs.shape == (20, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # NFD input (as macOS types Hangul) is the same pair; empty text is refused
    nfd = unicodedata.normalize("NFD", dev[0].premise)
    assert nfd != dev[0].premise
    np.testing.assert_allclose(predictor.predict_proba([nfd], [dev[0].hypothesis]), probs[:1])
    with pytest.raises(InvalidText, match="hypothesis must not be empty"):
        predictor.predict_proba([dev[0].premise], [" \n"])
    _, cut = predictor.predict_proba_truncated([dev[0].premise * 8, "짧다."], ["짧다.", "짧다."])
    assert cut.tolist() == [True, False]


def test_eval_json_holds_the_report_baselines_and_data(evaluated):
    saved, report, work = evaluated["saved"], evaluated["report"], evaluated["work"]
    assert saved["accuracy"] == report["accuracy"]
    sources = {"airbnb", "NSMC", "policy", "wikinews", "wikipedia", "wikitree"}
    assert set(saved["by_source"]) == sources
    assert set(saved["per_class"]) == {"entailment", "contradiction", "neutral"}
    assert abs(saved["baselines"]["majority"] - 1 / 3) < 0.01  # the sample is balanced
    assert 0.3 < saved["baselines"]["hypothesis_only"] < 0.7
    dev_file = work / "data/raw/klue-nli-v1.1_dev.json"
    assert saved["data"]["dev_sha256"] == hashlib.sha256(dev_file.read_bytes()).hexdigest()
    assert saved["data"]["dropped"] == 0 and saved["data"]["truncated"] > 0
    confusion = (work / "plots/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 403


def test_the_temperature_fitted_on_validation_travels_and_evaluate_measures_it(evaluated):
    """calibration.json is fitted on the validation pairs (never dev), checksummed with the
    weights; evaluate's ECE and Brier figures are those of the dev probabilities before and
    after it, recomputed here from the logits; scaling changes no answer."""
    saved, model_dir, work = evaluated["saved"], evaluated["model_dir"], evaluated["work"]
    fit = json.loads((model_dir / CALIBRATION_FILE).read_text())
    assert fit["pairs"] == 99 and fit["temperature"] > 0  # the 99 validation pairs
    assert fit["nll_after"] <= fit["nll_before"]
    assert CALIBRATION_FILE in json.loads((model_dir / MANIFEST_FILE).read_text())
    assert evaluated["metrics"]["temperature"] == fit["temperature"]

    predictor = Predictor.from_dir(model_dir, device="cpu")
    dev, _ = clean_examples(read_split(work / "data/raw", "dev"))
    logits, _ = predictor.logits_truncated([e.premise for e in dev], [e.hypothesis for e in dev])
    gold = np.array([predictor.labels.index(e.label) for e in dev])
    raw, scaled = softmax(logits), softmax(logits / fit["temperature"])
    figures = saved["calibration"]["dev"]
    assert figures["pairs"] == len(dev) == saved["n"]
    assert figures["ece_before"] == pytest.approx(expected_calibration_error(raw, gold, 15))
    assert figures["ece"] == pytest.approx(expected_calibration_error(scaled, gold, 15), abs=1e-6)
    assert figures["brier"] == pytest.approx(brier_score(scaled, gold), abs=1e-6)
    assert saved["calibration"]["temperature"] == fit["temperature"]
    # the same answers: accuracy from the raw logits is the report's
    assert np.mean(raw.argmax(axis=1) == gold) == pytest.approx(saved["accuracy"])
    assert saved["calibration"]["out_of_domain"]["pairs"] == 300

    kept = saved["unsure"]["dev"]
    assert saved["unsure"]["below"] == fit["unsure_below"]
    assert kept["coverage"] == pytest.approx(np.mean(scaled.max(axis=1) >= fit["unsure_below"]))
    assert saved["served"]["ece"] >= 0 and "unsure_share" in saved["served"]["profile"]
    for name in ("dev", "out_of_domain"):
        for when in ("before", "after"):
            rows = (work / f"plots/reliability/{name}_{when}_scaling.csv").read_text().splitlines()
            assert rows[0] == "lower,upper,confidence,accuracy,pairs" and len(rows) > 1
    curve = list(csv.DictReader((work / "plots/risk_coverage.csv").open()))
    assert float(curve[-1]["coverage"]) == 1.0
    assert float(curve[-1]["accuracy"]) == pytest.approx(saved["accuracy"])


def test_the_behaviour_suite_and_the_out_of_domain_set_are_scored(evaluated):
    saved, report = evaluated["saved"], evaluated["report"]
    behaviour = saved["behaviour"]
    assert len(behaviour) == 12 and behaviour["overall"]["n"] == 330  # 11 capabilities + overall
    for capability, result in behaviour.items():  # 30 cases each; a rate is passed / n
        assert result["n"] == (330 if capability == "overall" else 30), capability
        assert result["pass_rate"] * result["n"] == pytest.approx(
            round(result["pass_rate"] * result["n"])
        )
    overall = sum(r["pass_rate"] * r["n"] for c, r in behaviour.items() if c != "overall") / 330
    assert behaviour["overall"]["pass_rate"] == pytest.approx(overall)
    assert report["behaviour_pass"] == behaviour["overall"]["pass_rate"]
    # out of domain: the first 300 pairs of KorNLI's XNLI test file (the shrunk params)
    ood = saved["out_of_domain"]
    assert ood["dataset"] == "xnli.test.ko.tsv" and ood["n"] == 300
    assert 0 < ood["accuracy"] < 1 and 0 < ood["macro_f1"] <= ood["accuracy"] + 0.5
    assert report["out_of_domain_accuracy"] == ood["accuracy"]


def test_dvclive_writes_the_curves_and_the_best_validation(evaluated):
    work = evaluated["work"]
    train_metrics = json.loads((work / "metrics/train/metrics.json").read_text())
    assert train_metrics["val_records"] == 99  # 33 held-out premises, 3 pairs each
    history = val_history(work)
    assert train_metrics["best_val_acc"] == pytest.approx(max(acc for _, acc in history))
    # one TSV per metric, a row every 2 of 8 steps
    steps = tsv(work / "metrics/train/plots/metrics/train/loss_step.tsv")
    assert [r["step"] for r in steps] == ["1", "3", "5", "7"] and "loss_step" in steps[0]
    assert len(tsv(work / "metrics/train/plots/metrics/train/lr/decay.tsv")) >= 4


def test_train_and_evaluate_log_one_mlflow_run(evaluated):
    client, run = the_run(evaluated)
    provenance = json.loads((evaluated["model_dir"] / PROVENANCE_FILE).read_text())
    assert run.info.run_id == provenance["mlflow_run_id"]
    assert run.data.params["train.batch_size"] == "16"
    assert run.data.params["model.init"] == "random"
    assert "git_commit" in run.data.tags
    for key in (
        "train/loss_step",
        "train/lr/decay",
        "val/acc",
        "val/loss",
        "eval/accuracy",
        "eval/macro_f1",
        "eval/baselines.hypothesis_only",
        "eval/by_source.NSMC.accuracy",
        "eval/behaviour.negation.pass_rate",
        "eval/behaviour.overall.pass_rate",
        "eval/behaviour.time_order.pass_rate",
        "eval/out_of_domain.accuracy",
        "eval/out_of_domain.macro_f1",
        "features/train.unk_share",
        "features/train.truncated",
    ):
        assert key in run.data.metrics, key
    lrs = [m.value for m in client.get_metric_history(run.info.run_id, "train/lr/decay")]
    assert len(lrs) >= 3 and max(lrs) > lrs[-1]  # warmup then linear decay: the schedule ran
    assert run.data.metrics["eval/accuracy"] == pytest.approx(evaluated["report"]["accuracy"])


def test_the_logged_model_predicts_as_the_predictor_from_its_own_code(evaluated, tmp_path):
    """The logged MLflow model carries the layers it runs (no training, registry or test
    code) and runs from that copy alone, in a fresh process, with the Predictor's answers."""
    _, run = the_run(evaluated)
    mlflow.set_tracking_uri(evaluated["uri"])
    dev, predictor = evaluated["dev"], evaluated["predictor"]
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    frame = pd.DataFrame(
        {"premise": [e.premise for e in dev], "hypothesis": [e.hypothesis for e in dev]}
    )
    out = pyfunc.predict(frame)
    np.testing.assert_allclose(
        out[list(predictor.labels)].to_numpy(), evaluated["probs"], atol=1e-5
    )
    logged = Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{run.info.run_id}/model", dst_path=str(tmp_path / "logged")
        )
    ).resolve()
    code = logged / "code" / "klue_nli"
    assert sorted(p.name for p in code.iterdir()) == [
        "__init__.py",
        "core",
        "data",
        "inference",
        "network",
    ]
    probe = (
        "import json, sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({str(logged)!r})\n"
        "m.predict(pd.DataFrame({'premise': ['비가 온다.'], 'hypothesis': ['맑다.']}))\n"
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items()"
        " if n.split('.')[0] in ('klue_nli', 'pytorch_lightning', 'devtools', 'tests')}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=logged.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "klue_nli.inference.predictor" in loaded
    outside = {
        n: f for n, f in loaded.items() if not str(Path(f or code).resolve()).startswith(str(code))
    }
    assert not outside, outside

    # requirements.txt: the project's pins, never its own distribution (no index serves it),
    # and with what they install, every distribution the code loaded above imports
    def pinned(lines: list[str]) -> set[tuple[str, str]]:
        return {(normalise(n), v) for n, _, v in (x.partition("==") for x in lines) if v}

    wanted = pinned((logged / "requirements.txt").read_text().split())
    assert wanted and wanted <= pinned((ROOT / "constraints.txt").read_text().split()), wanted
    installs = _closure({name for name, _ in wanted})
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for name, file in loaded.items():
        if name.startswith("klue_nli") and file:
            for module in all_imports(Path(file)):
                if not {normalise(d) for d in providers.get(module, [])} & installs:
                    missing[module] = name
    assert not missing, f"imported by the logged code, not in requirements.txt: {missing}"


def test_onnx_runtime_serves_pytorchs_answers_whatever_the_batch(evaluated):
    """serve.runtime onnxruntime: the exported model's probabilities equal PyTorch fp32's,
    and a pair's answer does not depend on what it is batched with; evaluate says so."""
    dev, probs, saved = evaluated["dev"], evaluated["probs"], evaluated["saved"]
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    ort = Predictor.from_dir(evaluated["model_dir"], device="cpu", runtime="onnxruntime")
    assert (evaluated["predictor"].runtime, ort.runtime) == ("torch", "onnxruntime")
    batched = ort.predict_proba(premises, hypotheses, batch_size=16)
    np.testing.assert_allclose(batched, probs, atol=1e-5)
    alone = np.vstack(
        [ort.predict_proba([p], [h]) for p, h in zip(premises[:8], hypotheses[:8], strict=True)]
    )
    np.testing.assert_allclose(alone, batched[:8], atol=1e-6)
    # splitting a batch by length (less padding) changes no answer
    ort.max_padding = 1.0
    np.testing.assert_allclose(ort.predict_proba(premises, hypotheses, 16), batched, atol=1e-6)
    assert saved["served"]["runtime"] == "onnxruntime" and saved["served"]["quantize"] == "none"
    assert saved["served"]["argmax_agreement"] == 1.0
    assert saved["served"]["accuracy"] == saved["accuracy"]


def test_evaluate_reports_int8_and_bf16_as_served(evaluated, monkeypatch):
    """serve.quantize int8 (Linear layers, PyTorch) and bf16: close to fp32, not equal to it;
    evaluate counts the served model's agreement as it is counted here."""
    monkeypatch.chdir(evaluated["work"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", evaluated["uri"])  # evaluate logs to train's run
    mlflow.set_tracking_uri(evaluated["uri"])
    model_dir, predictor, probs = evaluated["model_dir"], evaluated["predictor"], evaluated["probs"]
    dev, params, saved = evaluated["dev"], evaluated["params"], evaluated["saved"]
    int8 = Predictor.from_dir(model_dir, quantize="int8")
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())  # all quantized
    probs_int8 = int8.predict_proba([e.premise for e in dev], [e.hypothesis for e in dev])
    assert np.abs(probs_int8 - probs).max() < 0.1
    serve = params.serve.model_copy(update={"quantize": "int8", "runtime": "torch"})
    evaluate(params.model_copy(update={"serve": serve}))
    served = json.loads((evaluated["work"] / "metrics/eval.json").read_text())["served"]
    assert served["quantize"] == "int8" and served["runtime"] == "torch"
    # dynamic int8 scales activations per batch: evaluate's batches may move a pair or two
    every = read_split("data/raw", "dev")  # what evaluate scored
    pairs = ([e.premise for e in every], [e.hypothesis for e in every])
    same = int8.predict_proba(*pairs).argmax(1) == predictor.predict_proba(*pairs).argmax(1)
    assert served["argmax_agreement"] == pytest.approx(float(np.mean(same)), abs=2 / len(every))
    # accuracies can differ only on the pairs where the two disagree
    assert abs(served["accuracy"] - saved["accuracy"]) <= 1 - served["argmax_agreement"] + 1e-9
    bf16 = Predictor.from_dir(model_dir, device="cpu", quantize="bf16")
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    probs_bf16 = bf16.predict_proba([e.premise for e in dev], [e.hypothesis for e in dev])
    assert probs_bf16.dtype == np.float32 and 0 < np.abs(probs_bf16 - probs).max() < 0.05


@pytest.mark.slow
def test_train_resumes_after_sigkill_from_the_last_epoch_not_the_best(features, make_params):
    """Killed after two epochs of which only the first validated best (a learning rate too
    small to change any answer), train resumes after the second epoch, not the first, and
    still exports the first epoch's weights."""
    params = make_params(train={"epochs": 3, "max_steps": -1, "learning_rate": 1e-12})
    params_file = write_params(features / "params.yaml", params)
    train_pairs = json.loads((features / "data/features/meta.json").read_text())["train"]
    per_epoch = -(-train_pairs["records"] // params.train.batch_size)
    proc = stage("train", params_file, features)
    deadline = time.time() + 240
    saved_at = None
    while saved_at is None or saved_at < 2 * per_epoch:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, f"no checkpoint after two epochs within 240 s ({saved_at})"
        time.sleep(0.2)
        for last in (features / "models/checkpoints").glob("*/last.ckpt"):
            with contextlib.suppress(Exception):  # caught while being written
                saved_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (features / "models/best").exists()  # nothing half-written

    rerun = stage("train", params_file, features)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert "Restored all states from the checkpoint" in output
    metrics = json.loads((features / "metrics/train/metrics.json").read_text())
    assert metrics["resumed_from_step"] == saved_at == 2 * per_epoch  # after epoch 2, not 1
    assert metrics["steps"] == 3 * per_epoch
    assert_three_epochs(features / "metrics/train/plots/metrics")
    first_epoch = float(tsv(features / "metrics/train/plots/metrics/val/acc.tsv")[0]["acc"])
    assert metrics["best_val_acc"] == pytest.approx(first_epoch)
    assert MlflowClient().search_runs(["1"]).__len__() == 1  # resumed the same MLflow run


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(features, make_params):
    params_file = write_params(
        features / "params.yaml",
        make_params(train={"strategy": "ddp", "devices": 2, "accelerator": "cpu", "max_steps": 4}),
    )
    proc = stage("train", params_file, features)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "distributed_backend=gloo" in output
    metrics = json.loads((features / "metrics/train/metrics.json").read_text())
    assert metrics["steps"] == 4
    assert (features / "models/best/model.safetensors").exists()
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # the second rank logged into rank 0's run, not a new one


@pytest.mark.slow
def test_two_nodes_with_torchrun_on_loopback(features, make_params, tmp_path):
    """train.num_nodes 2, one CPU process per node, launched as on two machines: torchrun on
    each, a static rendezvous at 127.0.0.1, and each node its own copy of the project folder.
    One MLflow run, one best model, written by rank 0 only."""
    params = make_params(
        train={
            "strategy": "ddp",
            "devices": 1,
            "num_nodes": 2,
            "accelerator": "cpu",
            "max_steps": 4,
        }
    )
    node1 = tmp_path / "node1"
    shutil.copytree(features, node1)
    port = free_port()
    procs = []
    for rank, folder in enumerate((features, node1)):
        params_file = write_params(folder / "params.yaml", params)
        launch = ["--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(rank)]
        launch += ["--master-addr", "127.0.0.1", "--master-port", str(port)]
        launch += ["-m", "stages.train", "--params", str(params_file)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", *launch],
                cwd=folder,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=(tmp_path / f"node{rank}.log").open("w"),  # files: no pipe to fill
                stderr=subprocess.STDOUT,
            )
        )
    for rank, proc in enumerate(procs):
        assert proc.wait(timeout=600) == 0, (tmp_path / f"node{rank}.log").read_text()
    metrics = json.loads((features / "metrics/train/metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert metrics["effective_batch_size"] == 2 * make_params().train.batch_size
    assert (features / "models/best/model.safetensors").exists()
    assert not (node1 / "models/best").exists() and not (node1 / "metrics/train").exists()
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and "val/acc" in runs[0].data.metrics  # rank 0 logged into it


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_training_uses_bf16_mixed_by_default(features, make_params):
    metrics = train(make_params(train={"accelerator": "auto"}))
    assert metrics["precision"] == "bf16-mixed"
    assert Predictor.from_dir(features / "models/best").device == "cuda"


def val_history(project: Path) -> list[tuple[int, float]]:
    rows = tsv(project / "metrics/train/plots/metrics/val/acc.tsv")
    return [(int(r["step"]), float(r["acc"])) for r in rows]


@pytest.mark.slow
def test_the_best_epoch_is_kept_when_it_is_not_the_last(workdir, make_params, tmp_path, klue_dir):
    """Validation at every epoch's end picks the checkpoint. On a task a tiny model learns
    (tests/pretrained.py), a warm-up that ramps the step size over the whole run, past what
    the model can take, makes a middle epoch the best (0.33, 0.64, 0.64, 0.56 on 2 cores):
    that epoch's weights are exported."""
    task = write_transfer_task(klue_dir, tmp_path / "task")
    params = make_params(
        data={"mirror": str(task)},
        train={
            "epochs": 4,
            "max_steps": -1,
            "batch_size": 64,
            "learning_rate": 3e-2,
            "warmup_ratio": 0.99,  # the step size still rising in the last epoch
            # validation and the predictor below in the same arithmetic: under bf16-mixed
            # (auto on a CPU with AVX512-BF16) one of 36 pairs can flip between the two
            "precision": "32-true",
        },
    )
    download(params)
    featurize(params)
    metrics = train(params)
    history = val_history(workdir)
    assert len(history) == 4  # one validation per epoch
    accuracies = [acc for _, acc in history]
    best = max(range(4), key=accuracies.__getitem__)
    print(f"validation accuracy per epoch: {accuracies}")
    assert accuracies[best] > accuracies[3], f"precondition: the last is not the best {accuracies}"
    assert metrics["best_val_acc"] == pytest.approx(accuracies[best])
    # the exported folder is that epoch's model: it scores the best accuracy on val, not the last
    _, val = split_by_premise(read_split("data/raw", "train"), params.data.val_fraction)
    predictor = Predictor.from_dir(workdir / "models/best", device="cpu", runtime="torch")
    predicted = predictor.predict([e.premise for e in val], [e.hypothesis for e in val])
    exported = float(np.mean([p == e.label for p, e in zip(predicted, val, strict=True)]))
    assert exported == pytest.approx(accuracies[best], abs=1e-6)
    assert exported != pytest.approx(accuracies[3], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("max_steps", "validations"), [(45, [29, 44]), (10_000, [29, 59])])
def test_max_steps_validates_at_each_epoch_end_and_where_it_stops(
    features, make_params, max_steps, validations
):
    """30 steps an epoch: a stop inside epoch 2 validates at the end of epoch 1 and at the stop;
    a stop beyond the schedule never comes, and every epoch end is validated (this raised a
    traceback: validation every max_steps steps never ran, best_model_score was None)."""
    params = make_params(train={"epochs": 2, "max_steps": max_steps, "batch_size": 64})
    metrics = train(params)
    assert [step for step, _ in val_history(features)] == validations
    assert metrics["steps"] == validations[-1] + 1  # DVCLive logs at the step before
    assert metrics["best_val_acc"] == pytest.approx(max(a for _, a in val_history(features)))


def test_an_mlflow_run_id_left_in_the_shell_is_not_adopted(features, make_params, monkeypatch):
    """A user's shell may hold MLFLOW_RUN_ID from other work: train starts its own run."""
    mlflow.set_experiment("someone-elses")
    with mlflow.start_run() as other:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", other.info.run_id)
    train(make_params())
    provenance = json.loads((features / "models/best" / PROVENANCE_FILE).read_text())
    assert provenance["mlflow_run_id"] != other.info.run_id
    assert MlflowClient().get_run(other.info.run_id).data.params == {}  # left untouched
