"""Stage 3: fine-tune on the feature cache with Lightning; export the best epoch (by
validation accuracy, on premises held out of the train file) as a Hugging Face folder; log
params, curves and the model to one MLflow run.

An interrupted run resumes from its last checkpoint (kept under paths.checkpoints_dir, keyed
by a fingerprint of the params and features, so a changed config never resumes a stale one).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytorch_lightning as pl
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger

from klue_nli import tracking
from klue_nli.cli import run_stage
from klue_nli.encoding import load_tokenizer
from klue_nli.features import TOKENIZER_DIR, read_meta
from klue_nli.io import atomic_dir, atomic_write_json, atomic_write_text
from klue_nli.lightning import NLIDataModule, NLIModule
from klue_nli.manifest import write_manifest
from klue_nli.modeling import build_model
from klue_nli.params import Params, TrainParams, flatten, params_to_dict
from klue_nli.predictor import PROVENANCE_FILE

MODEL_CODE = Path(__file__).resolve().parent.parent / "klue_nli" / "mlflow_model.py"


def resolve_precision(train: TrainParams) -> str:
    if train.precision != "auto":
        return train.precision
    gpu = train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def fingerprint(params: Params, features_meta: dict) -> str:
    """What a checkpoint must match to be resumed: everything that shapes training."""
    tree = params_to_dict(params)
    relevant = {key: tree[key] for key in ("seed", "labels", "model", "train")}
    relevant["features"] = features_meta
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class CurveRecorder(Callback):
    """Keeps the per-step and per-epoch curves for DVC plots; its state rides in checkpoints."""

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps
        self.steps: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []
        self.first_step = 0  # where this process started (after a resume, not 0)

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        m = trainer.callback_metrics
        self.steps.append(
            {
                "step": trainer.global_step,
                "train/loss": float(m["train/loss_step"]),
                "train/acc": float(m["train/acc_step"]),
                "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            }
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.epochs.append(
            {
                "epoch": trainer.current_epoch + 1,
                "step": trainer.global_step,
                "val/loss": float(m["val/loss"]),
                "val/acc": float(m["val/acc"]),
            }
        )

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps, self.epochs = state_dict["steps"], state_dict["epochs"]


class LearningRateLogger(Callback):
    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *a: Any) -> None:
        module.log("train/lr", trainer.optimizers[0].param_groups[0]["lr"], on_step=True)


def _csv(rows: list[dict[str, float]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _start_run(params: Params, features_meta: dict, run_file: Path) -> str:
    """The pipeline run's MLflow run: resumed from a checkpoint folder, inherited by DDP
    workers through MLFLOW_RUN_ID, or created with params, lineage tags and the feature
    statistics (dropped and truncated pairs, [UNK] share)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id and run_file.exists():
        run_id = run_file.read_text().strip()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    client = MlflowClient()
    if not run_id:
        experiment = mlflow.set_experiment(tracking.experiment_name())
        tags = {"git_commit": tracking.git_commit(), "pipeline": "dvc", **tracking.dvc_hashes()}
        run = client.create_run(experiment.experiment_id, tags=tags)
        run_id = run.info.run_id
        flat = flatten(params_to_dict(params))
        client.log_batch(
            run_id,
            params=[Param(k, tracking.redact(str(v))) for k, v in sorted(flat.items())],
            metrics=[
                Metric(f"features/{k}", float(v), int(time.time() * 1000), 0)
                for k, v in flatten(features_meta).items()
                if isinstance(v, int | float)
            ],
        )
    run_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_file, run_id)
    return run_id


def _export_best(
    module: NLIModule, ckpt_path: str, tokenizer: Any, model_dir: Path, provenance: dict
) -> None:
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    with atomic_dir(model_dir) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / PROVENANCE_FILE, provenance)
        write_manifest(tmp)


def log_model(run_id: str, model_dir: Path) -> None:
    example = pd.DataFrame({"premise": ["오늘은 비가 온다."], "hypothesis": ["날씨가 맑다."]})
    with mlflow.start_run(run_id=run_id):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(MODEL_CODE.parent)],
            input_example=example,
            # MLflow would record this process's absolute script path here
            tags={"mlflow.source.name": tracking.redact(tracking.source_name())},
        )


def train(params: Params) -> dict:
    """Fit, export the best checkpoint to paths.model_dir, return the training metrics."""
    paths, cfg = params.paths, params.train
    features_dir = Path(paths.features_dir)
    meta = read_meta(features_dir)
    ckpt_dir = Path(paths.checkpoints_dir) / fingerprint(params, meta)
    last = ckpt_dir / "last.ckpt"
    run_file = ckpt_dir.with_name(ckpt_dir.name + ".mlflow_run_id")  # beside, not inside
    run_id = _start_run(params, meta, run_file)

    pl.seed_everything(params.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(str(features_dir / TOKENIZER_DIR))
    model = build_model(params.model, params.labels, tokenizer)
    module = NLIModule(model, cfg)
    data = NLIDataModule(features_dir, cfg, tokenizer.pad_token_id, params.seed)
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    curves = CurveRecorder(cfg.log_every_n_steps)
    # A step-capped run may stop mid-epoch: validate exactly where it stops, so the best
    # checkpoint (by val/acc) exists. Otherwise validate at every epoch's end.
    val_schedule = (
        {"val_check_interval": cfg.max_steps, "check_val_every_n_epoch": None}
        if cfg.max_steps > 0
        else {}
    )
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=resolve_precision(cfg),
        logger=MLFlowLogger(
            experiment_name=tracking.experiment_name(),
            tracking_uri=tracking.tracking_uri(),
            run_id=run_id,
        ),
        callbacks=[best, curves, LearningRateLogger()],
        log_every_n_steps=cfg.log_every_n_steps,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **val_schedule,
    )
    started = time.perf_counter()
    with tracking.run_env(run_id):  # DDP workers start in here and log to the same run
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:  # DDP workers: rank 0 writes every output
        return {}

    model_dir = Path(paths.model_dir)
    provenance = {
        "mlflow_run_id": run_id,
        "git_commit": tracking.git_commit(),
        "best_checkpoint_val_acc": float(best.best_model_score),
        **tracking.dvc_hashes(),
    }
    _export_best(module, best.best_model_path, tokenizer, model_dir, provenance)
    metrics = {
        # picked on the premises held out of the train file; the dev score is evaluate's
        "best_val_acc": float(best.best_model_score),
        "val_records": meta["val"]["records"],
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(seconds, 2),
        "train_examples_per_s": round(
            (trainer.global_step - curves.first_step)
            * cfg.batch_size
            * trainer.world_size
            / seconds,
            1,
        ),
        "precision": resolve_precision(cfg),
    }
    atomic_write_json(paths.train_metrics, metrics)
    atomic_write_text(paths.train_curve, _csv(curves.steps))
    atomic_write_text(paths.val_curve, _csv(curves.epochs))
    log_model(run_id, model_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: nothing left to resume
    run_file.unlink(missing_ok=True)
    return metrics


def main() -> None:
    run_stage(train)


if __name__ == "__main__":
    main()
