"""Fine-tuning from a pretrained checkpoint (model.init: pretrained) through the real stages,
offline: the checkpoint is built by tests/pretrained.py. Also: the model can learn at all
(the LightningModule overfits 32 pairs), and bad checkpoint folders get one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from klue_nli.core.errors import UserError
from klue_nli.data.encoding import load_tokenizer
from klue_nli.data.features import FeatureSplit, split_file
from klue_nli.model.datamodule import Collate, FeatureDataset
from klue_nli.model.modeling import build_model
from klue_nli.model.module import NLIModule
from stages.download import download
from stages.evaluate import evaluate
from stages.featurize import featurize
from stages.train import train
from tests.conftest import ROOT, write_params
from tests.pretrained import build_checkpoint, write_transfer_task

BUDGET = {"epochs": 1, "max_steps": 16, "batch_size": 16, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, klue_dir, kcbert) -> Path:
    return build_checkpoint(klue_dir, kcbert, tmp_path_factory.mktemp("ckpt") / "tiny-bert")


@pytest.fixture(scope="module")
def transfer_task(tmp_path_factory, klue_dir) -> Path:
    return write_transfer_task(klue_dir, tmp_path_factory.mktemp("task") / "klue-nli")


def pipeline(make_params, mirror: Path, source: str, init: str) -> tuple[dict, dict]:
    params = make_params(
        data={"mirror": str(mirror)},
        model={"name_or_path": source, "init": init},
        train=BUDGET,
    )
    download(params)
    featurize(params)
    return train(params), evaluate(params)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_checkpoint_and_beats_random_init(
    workdir, make_params, checkpoint, transfer_task
):
    params = make_params(model={"name_or_path": str(checkpoint), "init": "pretrained"})
    # the model the train stage builds, at step 0: the checkpoint's encoder, a new head
    tokenizer = load_tokenizer(str(checkpoint))
    model = build_model(params.model, params.labels, tokenizer)
    saved = load_file(checkpoint / "model.safetensors")
    encoder = {k: v for k, v in model.state_dict().items() if k.startswith("bert.")}
    assert encoder and set(encoder) <= set(saved)
    for key, value in encoder.items():
        assert torch.equal(value, saved[key]), key
    assert not any(k.startswith("classifier") for k in saved)
    assert model.classifier.out_features == 3
    assert model.config.id2label == {0: "entailment", 1: "contradiction", 2: "neutral"}

    pretrained_train, pretrained = pipeline(
        make_params, transfer_task, str(checkpoint), "pretrained"
    )
    # the tokenizer came from the checkpoint folder, through the features, into the model
    vocab = tokenizer.get_vocab()
    assert load_tokenizer("data/features/tokenizer").get_vocab() == vocab
    assert load_tokenizer("models/best").get_vocab() == vocab
    config = json.loads((workdir / "models/best/config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "entailment", "1": "contradiction", "2": "neutral"}
    # fine-tuned, not replaced: the embeddings moved only a little from the checkpoint's
    best = load_file(workdir / "models/best/model.safetensors")
    key = "bert.embeddings.word_embeddings.weight"
    drift = (best[key] - saved[key]).abs().max().item()
    assert 0 < drift < 0.05, drift

    shutil.rmtree(workdir / "data")
    shutil.rmtree(workdir / "models")
    random_train, random = pipeline(make_params, transfer_task, str(checkpoint), "random")
    assert random_train["steps"] == pretrained_train["steps"] == BUDGET["max_steps"]
    print(
        f"dev accuracy at {BUDGET['max_steps']} steps: pretrained {pretrained['accuracy']:.3f}"
        f", random init {random['accuracy']:.3f}"
    )
    assert pretrained["accuracy"] > random["accuracy"] + 0.15
    # two pipeline runs in one process are two MLflow runs (the first's id did not leak)
    client = MlflowClient()
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 2


def test_the_module_overfits_32_pairs(make_params, workdir):
    """The real LightningModule (loss, optimiser, schedule) drives 32 training pairs to 100 %."""
    params = make_params()
    download(params)
    featurize(params)
    tokenizer = load_tokenizer("data/features/tokenizer")
    split = FeatureSplit.load(split_file("data/features", "train"))
    subset = torch.utils.data.Subset(FeatureDataset(split), range(32))
    loader = DataLoader(subset, batch_size=32, collate_fn=Collate(tokenizer.pad_token_id))
    cfg = params.train.model_copy(
        update={"learning_rate": 3e-3, "warmup_ratio": 0.0, "weight_decay": 0.0}
    )
    pl.seed_everything(7, verbose=False)
    module = NLIModule(build_model(params.model, params.labels, tokenizer), cfg)
    trainer = pl.Trainer(
        max_steps=150,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    module.eval()
    with torch.no_grad():
        batch = next(iter(loader))
        labels = batch.pop("labels")
        accuracy = (module(**batch).argmax(-1) == labels).float().mean().item()
    assert accuracy == 1.0


@pytest.mark.slow
def test_bad_checkpoint_folders_get_one_clear_line(make_params, workdir, checkpoint, kcbert):
    params_for = lambda source: make_params(  # noqa: E731
        model={"name_or_path": str(source), "init": "pretrained"}
    )
    download(params_for(checkpoint))
    featurize(params_for(checkpoint))  # features encoded with the checkpoint's vocabulary

    gpt = workdir / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    with pytest.raises(
        UserError,
        match=r"holds a 'gpt2' model; .* model_type 'bert', 'roberta', 'xlm-roberta', 'electra'$",
    ):
        train(params_for(gpt))

    other_vocab = workdir / "other-vocab"
    shutil.copytree(checkpoint, other_vocab)
    ids = load_tokenizer(str(checkpoint)).get_vocab()
    tokens = sorted(ids, key=ids.get)[:20000]  # a smaller WordPiece vocabulary
    (other_vocab / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (other_vocab / "tokenizer.json").unlink()
    with pytest.raises(UserError, match=r"vocabulary of .* \(20000 tokens\) is not the one"):
        train(params_for(other_vocab))

    # kcbert-base's folder as shipped here: vocab.txt and config.json, no weights
    weightless = workdir / "no-weights"
    shutil.copytree(checkpoint, weightless)
    (weightless / "model.safetensors").unlink()
    write_params(workdir / "params.yaml", params_for(weightless))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"train: error: model.name_or_path: {str(weightless)!r} holds no weights "
        "(model.safetensors or pytorch_model.bin); set model.init: random to train a small "
        "BERT from scratch"
    ]
    assert not (workdir / "models/best").exists()
