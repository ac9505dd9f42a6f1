"""The LightningModule: loss, metrics, optimiser and schedule, with one step shared by
training and validation; AdamW's parameter groups (weight decay, layer-wise lr decay); and
the callbacks that end a run at train.max_steps and average its last steps' weights."""

from __future__ import annotations

import re

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from klue_nli.core.errors import ParamsError
from klue_nli.core.params import TrainParams


class NLIModule(pl.LightningModule):
    def __init__(self, model: PreTrainedModel, train: TrainParams) -> None:
        super().__init__()
        self.model = model
        self.cfg = train
        if train.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        if train.freeze_layers:
            freeze_lowest(model, train.freeze_layers)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.model(**batch).logits

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        labels = batch.pop("labels")
        logits = self(**batch)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=-1) == labels).float().mean()
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/loss": loss, f"{stage}/acc": acc},
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=labels.shape[0],
            sync_dist=not on_step,  # epoch means over all DDP ranks; steps stay per rank
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def configure_optimizers(self):
        groups = param_groups(self.model, self.cfg)
        optimizer = torch.optim.AdamW(groups, lr=self.cfg.learning_rate, fused=fused_adamw(groups))
        total = scheduled_steps(self.trainer, self.cfg)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(total * self.cfg.warmup_ratio), total
        )
        # interval=step: the original tutorial's scheduler never stepped; this one does.
        # The name is what LearningRateMonitor logs it as (train/lr/decay, train/lr/no_decay).
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }


_LAYER = re.compile(r"\.layer\.(\d+)\.")


def freeze_lowest(model: PreTrainedModel, n: int) -> None:
    """Keep the embeddings and encoder layers 0 .. n-1 as they are (train.freeze_layers)."""
    layers = int(model.config.num_hidden_layers)
    if n >= layers:
        raise ParamsError(
            f"train.freeze_layers: {n} leaves no encoder layer to train (the model has {layers})"
        )
    for name, param in model.named_parameters():
        if layer_depth(name, layers) <= n:
            param.requires_grad_(False)


def layer_depth(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, num_layers + 1 for what sits on top
    (pooler, classifier head)."""
    if ".embeddings." in f".{name}":
        return 0
    found = _LAYER.search(name)
    return int(found.group(1)) + 1 if found else num_layers + 1


def fused_adamw(groups: list[dict]) -> bool:
    """AdamW's fused kernel where every parameter lives on a device that has it (CPU, CUDA):
    one pass over each tensor instead of a Python loop of element-wise ops (the same update,
    to float rounding; its cost: docs/performance.md); other devices keep the loop."""
    return all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])


def param_groups(model: torch.nn.Module, cfg: TrainParams) -> list[dict]:
    """AdamW's groups: no decay on biases and LayerNorm weights (as in BERT's and the KLUE
    baseline's recipe), and with train.layer_decay < 1 one learning rate per depth. The top
    groups keep the names `decay` and `no_decay`, which LearningRateMonitor logs as
    train/lr/decay and train/lr/no_decay; deeper ones `decay_depth3` and so on (a name with a
    slash would nest under `decay`, a number already, in DVCLive's metrics)."""
    layers = int(model.config.num_hidden_layers)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:  # train.freeze_embeddings leaves the word embeddings out
            continue
        depth = layer_depth(name, layers) if cfg.layer_decay < 1 else layers + 1
        groups.setdefault((depth, param.ndim >= 2), []).append(param)
    out = []
    for (depth, decays), params in sorted(groups.items(), reverse=True):
        name = "decay" if decays else "no_decay"
        out.append(
            {
                "params": params,
                "weight_decay": cfg.weight_decay if decays else 0.0,
                "lr": cfg.learning_rate * cfg.layer_decay ** (layers + 1 - depth),
                "name": name if depth == layers + 1 else f"{name}_depth{depth}",
            }
        )
    return out


def scheduled_steps(trainer: pl.Trainer, cfg: TrainParams) -> int:
    """The optimiser steps the run is scheduled for: the epochs' batches, or train.max_steps
    where it is fewer. train's Trainer has no step limit (StopAtStep ends the run at
    train.max_steps), so the schedule ends there too; a Trainer given its own is followed."""
    total = int(trainer.estimated_stepping_batches)
    if cfg.max_steps > 0 and trainer.max_steps == -1:
        total = min(total, cfg.max_steps)
    return total


class TailAverage(WeightAveraging):
    """train.swa_from: the equal-weight average of the weights after each step from that
    fraction of the schedule on (stochastic weight averaging over the tail of the decaying
    schedule). Before the first averaged step, validation sees the weights as trained."""

    def __init__(self, start_fraction: float, cfg: TrainParams) -> None:
        super().__init__()  # no avg_fn: AveragedModel's running equal-weight mean
        self.start_fraction = start_fraction
        self.cfg = cfg
        self.start_step = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.start_step = int(scheduled_steps(trainer, self.cfg) * self.start_fraction)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step

    def averaging(self) -> bool:
        """Whether a step has been averaged yet: before that, the average holds the weights
        at the start of fit, which validation, checkpoints and the export must not see."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        if self.averaging():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        # a checkpoint saved before the tail holds no average: the next step starts it
        if "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class StopAtStep(pl.Callback):
    """train.max_steps: stop after that many optimiser steps, and validate there (as early
    stopping does, through Trainer.should_stop). Validation still runs at every epoch end
    before it, so the best epoch is chosen as in a full run, and a stop beyond the schedule
    simply never comes."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step >= self.steps:
            trainer.should_stop = True
