"""Lightning wiring: the DataModule reads only the feature cache; the module owns loss,
metrics, optimiser and schedule, with one step shared by training and validation; the best
checkpoint is exported as a Hugging Face model folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from klue_nli.core.io import atomic_dir, atomic_write_json
from klue_nli.core.manifest import PROVENANCE_FILE, write_manifest
from klue_nli.core.params import TrainParams
from klue_nli.data.encoding import pad_batch
from klue_nli.data.features import FeatureSplit, split_file


class FeatureDataset(Dataset):
    def __init__(self, split: FeatureSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None, int]:
        ids, types = self.split.pair(i)
        return ids, types, int(self.split.labels[i])


class Collate:
    """Pads each batch to its own longest pair (picklable, for DataLoader workers)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(
        self, items: list[tuple[np.ndarray, np.ndarray | None, int]]
    ) -> dict[str, torch.Tensor]:
        ids, types, labels = zip(*items, strict=True)
        # a feature cache without segment ids: the model takes none (RoBERTa family)
        batch = pad_batch(ids, None if types[0] is None else types, self.pad_id)
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


class LengthGroupedSampler(Sampler[int]):
    """Batches of similar length: shuffle, sort within windows of 50 batches, cut into
    batches, then shuffle the order of those batches (sorted order alone would feed each
    window longest-first, a length curriculum nobody asked for). The window's longest batch
    stays first, so a run that would run out of memory does so at once. Windows are whole
    batches (50 of them), so the loader's batches are exactly these. transformers'
    `LengthGroupedSampler` differs in just that order: it yields each window longest to
    shortest (and draws from torch's global generator rather than its own seed)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.window = batch_size * 50
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        for start in range(0, len(order), self.window):
            window = order[start : start + self.window]
            window = window[np.argsort(-self.lengths[window], kind="stable")]
            batches = [
                window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)
            ]
            # first (longest) and last (shortest, maybe partial: batch boundaries must not
            # shift) stay in place; the batches between come in random order
            middle = (rng.permutation(len(batches) - 2) + 1).tolist() if len(batches) > 2 else []
            last = [len(batches) - 1] if len(batches) > 1 else []
            for b in [0, *middle, *last]:
                yield from batches[b].tolist()


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


class NLIDataModule(pl.LightningDataModule):
    def __init__(
        self, features_dir: str | Path, train: TrainParams, pad_id: int, seed: int
    ) -> None:
        super().__init__()
        self.features_dir = Path(features_dir)
        self.cfg = train
        self.collate = Collate(pad_id)
        self.seed = seed
        self.splits: dict[str, FeatureSplit] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val"):
            if split not in self.splits:
                self.splits[split] = FeatureSplit.load(split_file(self.features_dir, split))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.splits[split]
        sampler = None
        if shuffle and self.cfg.group_by_length:
            sampler = LengthGroupedSampler(data.lengths, self.cfg.batch_size, self.seed)
        return DataLoader(
            FeatureDataset(data),
            batch_size=self.cfg.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        # The held-out premises of the train file, never dev: dev only reports (evaluate).
        return self._loader("val", shuffle=False)


class NLIModule(pl.LightningModule):
    def __init__(self, model: PreTrainedModel, train: TrainParams) -> None:
        super().__init__()
        self.model = model
        self.cfg = train
        if train.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)

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
        optimizer = torch.optim.AdamW(param_groups(self.model, self.cfg), lr=self.cfg.learning_rate)
        total = int(self.trainer.estimated_stepping_batches)
        if self.cfg.max_steps > 0 and self.trainer.max_steps == -1:
            # train's Trainer has no step limit (StopAtStep ends the run at train.max_steps):
            # the schedule ends there too. A Trainer given its own max_steps is followed.
            total = min(total, self.cfg.max_steps)
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


def layer_depth(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, num_layers + 1 for what sits on top
    (pooler, classifier head)."""
    if ".embeddings." in f".{name}":
        return 0
    found = _LAYER.search(name)
    return int(found.group(1)) + 1 if found else num_layers + 1


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


def resolve_precision(train: TrainParams) -> str:
    """`auto`: bf16-mixed where the hardware computes bf16 (a GPU that has it, a CPU with
    AVX512-BF16 or AMX: about twice fp32's examples/s on 2 Zen 5 cores, docs/model.md),
    else 32-true."""
    if train.precision != "auto":
        return train.precision
    if train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if train.accelerator in ("auto", "cpu") and _cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"


def _cpu_has_bf16() -> bool:
    """oneDNN's own check for native bf16 (AVX512-BF16, AMX); emulated bf16 is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def export_best(
    module: NLIModule, ckpt_path: str, tokenizer, model_dir: Path, provenance: dict
) -> None:
    """The checkpoint's weights, the tokenizer, the lineage and the checksums, as one folder
    written atomically: what evaluate, the registry and the service load."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    with atomic_dir(model_dir) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / PROVENANCE_FILE, provenance)
        write_manifest(tmp)
