"""Stage 3: fine-tune on the feature cache with Lightning; export the best epoch (by
validation accuracy, on premises held out of the train file) as a Hugging Face folder, with
the temperature and unsure threshold fitted on the same validation pairs; log params, curves
and the model to one MLflow run, and curves and metrics with DVCLive.

An interrupted run resumes from its last checkpoint (kept under paths.checkpoints_dir, keyed
by a fingerprint of the params and features, so a changed config never resumes a stale one).
"""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, WeightAveraging
from pytorch_lightning.loggers import Logger, MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.optim.swa_utils import get_ema_avg_fn

from klue_nli.core.env import scoped_env
from klue_nli.core.params import Params, TrainParams, flatten, params_to_dict
from klue_nli.core.stage_runner import run_stage
from klue_nli.data.encoding import load_tokenizer
from klue_nli.data.features import TOKENIZER_DIR, read_meta
from klue_nli.model.checkpoints import checkpoint_dir, resume_step
from klue_nli.model.datamodule import NLIDataModule
from klue_nli.model.export import export_best, load_best, predict_logits
from klue_nli.model.live import live_logger, publish
from klue_nli.model.modeling import build_model
from klue_nli.model.module import NLIModule, StopAtStep, TailAverage
from klue_nli.model.precision import resolve_precision
from klue_nli.model.quiet import quiet_lightning
from klue_nli.network.calibration import fit_calibration
from klue_nli.registry import tracking


def train(params: Params) -> dict:
    """Fit, export the best checkpoint to paths.model_dir, return the training metrics."""
    paths, cfg = params.paths, params.train
    features_dir = Path(paths.features_dir)
    meta = read_meta(features_dir)
    ckpt_dir = checkpoint_dir(params, meta)
    last = ckpt_dir / "last.ckpt"
    resumed_at = resume_step(last)
    run_file = ckpt_dir.with_name(ckpt_dir.name + ".mlflow_run_id")  # beside, not inside
    live_dir = ckpt_dir.with_name(ckpt_dir.name + ".dvclive")  # beside the checkpoints
    run_id = _open_run(params, meta, run_file)

    quiet_lightning()
    pl.seed_everything(params.seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(str(features_dir / TOKENIZER_DIR))
    module = NLIModule(build_model(params.model, params.labels, tokenizer), cfg)
    data = NLIDataModule(features_dir, cfg, tokenizer.pad_token_id, params.seed)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc", mode="max")
    live = live_logger(live_dir, resumed_at)
    trainer = _trainer(cfg, _loggers(live, run_id), _callbacks(cfg, best, ckpt_dir))
    started = time.perf_counter()
    # DDP workers start in here and log to the same run; a later train() in this process
    # must not inherit it
    with scoped_env(tracking.PIPELINE_RUN_ENV, run_id) if run_id else nullcontext():
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:  # DDP workers: rank 0 writes every output
        return {}

    model_dir = Path(paths.model_dir)
    fitted = _export(params, module, data, tokenizer, _provenance(run_id, best), best)
    metrics = {**_metrics(trainer, best, cfg, meta, resumed_at or 0, seconds), **fitted}
    live.experiment.summary.update(metrics)
    live.experiment.make_summary()
    publish(live_dir, paths.train_live)
    tracking.log_model(run_id, model_dir)
    for folder in (ckpt_dir, live_dir):  # finished: nothing left to resume
        shutil.rmtree(folder, ignore_errors=True)
    run_file.unlink(missing_ok=True)
    return metrics


def _export(
    params: Params,
    module: NLIModule,
    data: NLIDataModule,
    tokenizer,
    provenance: dict,
    best: ModelCheckpoint,
) -> dict:
    """The best epoch's weights, with the temperature and unsure threshold fitted on the
    validation pairs, as the model folder; the fit's two figures (calibration.json in the
    folder holds the whole fit)."""
    load_best(module, best.best_model_path)
    logits, gold = predict_logits(module, data.val_dataloader())
    calibration = fit_calibration(logits, gold, params.calibration.target_accuracy)
    model_dir = Path(params.paths.model_dir)
    export_best(module, tokenizer, model_dir, provenance, calibration.to_dict())
    return {"temperature": calibration.temperature, "unsure_below": calibration.unsure_below}


def _trainer(cfg: TrainParams, loggers: list, callbacks: list) -> pl.Trainer:
    """Lightning's Trainer as train.* says: epochs, devices, precision (auto: what the
    hardware computes natively), no sanity validation (the first epoch validates)."""
    return pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=resolve_precision(cfg),
        logger=loggers,
        callbacks=callbacks,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _provenance(run_id: str | None, best: ModelCheckpoint) -> dict:
    """What the exported folder records of where it came from."""
    return {
        "mlflow_run_id": run_id,
        "git_commit": tracking.git_commit(),
        "best_checkpoint_val_acc": float(best.best_model_score),
        **tracking.dvc_hashes(),
    }


def _open_run(params: Params, meta: dict, run_file: Path) -> str | None:
    """The MLflow run of this training (resumed from `run_file` if one was left). Under
    torchrun or SLURM every process runs this stage; rank 0 alone owns the run (Lightning's
    loggers log from rank 0 only), so the other ranks open none."""
    if rank_zero_only.rank != 0:
        return None
    feature_stats = {
        f"features/{k}": v for k, v in flatten(meta).items() if isinstance(v, int | float)
    }
    return tracking.start_run(flatten(params_to_dict(params)), feature_stats, run_file)


def _loggers(live: Logger, run_id: str | None) -> list[Logger]:
    # Rank 0 only: the MLflow logger opens the tracking store on creation, and ranks racing
    # to create a fresh sqlite store's tables fail.
    if run_id is None:
        return [live]
    mlflow_logger = MLFlowLogger(
        experiment_name=tracking.experiment_name(),
        tracking_uri=tracking.tracking_uri(),
        run_id=run_id,
    )
    return [mlflow_logger, live]


def _callbacks(cfg: TrainParams, best: ModelCheckpoint, ckpt_dir: Path) -> list[pl.Callback]:
    # last.ckpt after every epoch, improved or not (save_last writes it only beside a new
    # best, so a run killed after an epoch that did not improve would train that epoch again).
    # After `best` in the list: the state it saves holds this epoch's best already.
    latest = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    return [
        best,
        latest,
        LearningRateMonitor(logging_interval="step"),
        # validation at every epoch's end, and where train.max_steps stops the run
        *([StopAtStep(cfg.max_steps)] if cfg.max_steps > 0 else []),
        # validated, checkpointed and exported as the average (Lightning swaps it in)
        *([WeightAveraging(avg_fn=get_ema_avg_fn(cfg.ema_decay))] if cfg.ema_decay else []),
        *([TailAverage(cfg.swa_from, cfg)] if cfg.swa_from else []),
    ]


def _metrics(
    trainer: pl.Trainer,
    best: ModelCheckpoint,
    cfg: TrainParams,
    meta: dict,
    resumed_at: int,
    seconds: float,
) -> dict:
    steps_here = trainer.global_step - resumed_at
    return {
        # picked on the premises held out of the train file; the dev score is evaluate's
        "best_val_acc": float(best.best_model_score),
        "val_records": meta["val"]["records"],
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "resumed_from_step": resumed_at,
        "train_seconds": round(seconds, 2),
        "train_examples_per_s": round(
            steps_here * cfg.batch_size * trainer.world_size / seconds, 1
        ),
        "precision": resolve_precision(cfg),
        "world_size": trainer.world_size,
        # train.batch_size is per process (as in Lightning): the optimiser sees this many
        "effective_batch_size": cfg.batch_size * trainer.world_size,
    }


main = partial(run_stage, train)  # the thin main(): params.yaml in, a summary or one error out

if __name__ == "__main__":
    main()
