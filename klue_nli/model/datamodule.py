"""The DataModule and what it is made of: it reads only the feature cache (featurize's
output), pads each batch to its own longest pair and, with train.group_by_length, batches
pairs of similar length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at each epoch's start, a resumed run included: the order
        follows the trainer's epoch, so a run resumed at epoch 3 sees epoch 3's order."""
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
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
