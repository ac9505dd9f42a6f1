"""The feature cache: unpadded token ids per split in safetensors (no pickle), plus meta.json.

A split is stored ragged: all pairs' ids concatenated, with `offsets` (n + 1) marking where
each pair starts, so training pads per batch instead of to max_seq_length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from klue_nli.core.errors import DataError

META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"


def split_file(features_dir: str | Path, split: str) -> Path:
    return Path(features_dir) / f"{split}.safetensors"


@dataclass(frozen=True)
class FeatureSplit:
    input_ids: np.ndarray  # int32, flat
    offsets: np.ndarray  # int64, n + 1
    labels: np.ndarray  # int64, n
    token_type_ids: np.ndarray | None = None  # int8, flat; None for models without them

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        start, end = self.offsets[i], self.offsets[i + 1]
        types = None if self.token_type_ids is None else self.token_type_ids[start:end]
        return self.input_ids[start:end], types

    @classmethod
    def from_lists(
        cls,
        input_ids: list[list[int]],
        token_type_ids: list[list[int]] | None,
        labels: list[int],
    ) -> FeatureSplit:
        lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(
            input_ids=np.fromiter(
                (t for ids in input_ids for t in ids), dtype=np.int32, count=int(offsets[-1])
            ),
            token_type_ids=None
            if token_type_ids is None
            else np.fromiter(
                (t for ids in token_type_ids for t in ids), dtype=np.int8, count=int(offsets[-1])
            ),
            offsets=offsets,
            labels=np.asarray(labels, dtype=np.int64),
        )

    def save(self, path: str | Path) -> None:
        tensors = {"input_ids": self.input_ids, "offsets": self.offsets, "labels": self.labels}
        if self.token_type_ids is not None:
            tensors["token_type_ids"] = self.token_type_ids
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSplit:
        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            raise DataError(f"{path}: missing; run the featurize stage first (dvc repro)") from None
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise DataError(f"{path}: unreadable feature file ({exc})") from None
        try:
            split = cls(**tensors)
        except TypeError:
            raise DataError(f"{path}: an older feature file; rerun featurize") from None
        types = split.token_type_ids
        if (
            split.offsets[-1] != len(split.input_ids)
            or len(split.offsets) != len(split) + 1
            or (types is not None and len(types) != len(split.input_ids))
        ):
            raise DataError(f"{path}: inconsistent offsets; delete it and rerun featurize")
        return split


def read_meta(features_dir: str | Path) -> dict:
    path = Path(features_dir) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the featurize stage first (dvc repro)") from None
