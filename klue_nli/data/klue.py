"""KLUE-NLI v1.1 files: names, reading and schema checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from klue_nli.core.errors import DataError
from klue_nli.core.labels import KNOWN_LABELS
from klue_nli.data.text import InvalidText, clean_pair

SPLITS: tuple[str, ...] = ("train", "dev")


def split_filename(split: str) -> str:
    return f"klue-nli-v1.1_{split}.json"


@dataclass(frozen=True)
class Example:
    guid: str
    source: str
    premise: str
    hypothesis: str
    label: str


def parse_examples(data: bytes, name: str) -> list[Example]:
    """Parse an official-format file and check every record; errors name the file and record."""
    try:
        records = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(records, list):
        raise DataError(f"{name}: expected a JSON list of records, got {type(records).__name__}")
    if not records:
        raise DataError(f"{name}: holds no records")
    examples = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{name}: record {i} is not an object")
        for key in ("premise", "hypothesis", "gold_label"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{name}: record {i} has no string field {key!r}")
        if record["gold_label"] not in KNOWN_LABELS:
            raise DataError(
                f"{name}: record {i} has gold_label {record['gold_label']!r}, "
                f"not one of {list(KNOWN_LABELS)}"
            )
        examples.append(
            Example(
                guid=str(record.get("guid", i)),
                source=_source(record),
                premise=record["premise"],
                hypothesis=record["hypothesis"],
                label=record["gold_label"],
            )
        )
    return examples


def _source(record: dict) -> str:
    """Where the text comes from (NSMC, airbnb, wikinews, ...): the official dev file names it
    `source`, the official train file `genre`."""
    for key in ("source", "genre"):
        if isinstance(record.get(key), str) and record[key]:
            return record[key]
    return "unknown"


def read_raw(path: Path, parse: Callable[[bytes, str], list[Example]]) -> list[Example]:
    """A downloaded file parsed by `parse`; missing, it says which stage writes it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the download stage first (dvc repro)") from None
    return parse(data, str(path))


def read_split(raw_dir: str | Path, split: str) -> list[Example]:
    return read_raw(Path(raw_dir) / split_filename(split), parse_examples)


def clean_examples(examples: list[Example]) -> tuple[list[Example], int]:
    """The examples whose pair passes the one text rule (klue_nli/data/text.py), their text
    NFC-normalised, and how many were dropped (a record with no text carries no signal)."""
    kept = []
    for example in examples:
        try:
            premise, hypothesis = clean_pair(example.premise, example.hypothesis)
        except InvalidText:
            continue
        kept.append(dataclasses.replace(example, premise=premise, hypothesis=hypothesis))
    return kept, len(examples) - len(kept)


def split_by_premise(
    examples: list[Example], fraction: float
) -> tuple[list[Example], list[Example]]:
    """(train, validation): about `fraction` of the premises, with all their pairs, go to
    validation, so no premise is on both sides (KLUE pairs each premise with three
    hypotheses; splitting pairs would leak the premise). Premises are ordered by their
    sha256, so the split depends only on the text, not on the file's order or a seed."""
    premises = sorted(
        {e.premise for e in examples}, key=lambda p: hashlib.sha256(p.encode()).digest()
    )
    n_val = min(len(premises) - 1, max(1, round(len(premises) * fraction)))
    held_out = set(premises[:n_val])
    train = [e for e in examples if e.premise not in held_out]
    val = [e for e in examples if e.premise in held_out]
    return train, val


def subset_by_premise(examples: list[Example], n_pairs: int, seed: int) -> list[Example]:
    """About `n_pairs` of `examples` (all of them if there are no more): whole premises, so
    the three hypotheses of a premise stay together, drawn by `seed` from each label mix
    (most premises have one pair per label, some two of one label) in proportion to its
    share of the pairs, so the subset's labels are distributed as the file's. The result
    keeps the file's order."""
    if n_pairs >= len(examples):
        return examples
    pairs: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        pairs[example.premise].append(example)
    strata: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for premise, group in pairs.items():
        strata[tuple(sorted(e.label for e in group))].append(premise)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for mix in sorted(strata):  # a fixed order: the draw depends on the seed alone
        premises = sorted(strata[mix])
        quota = n_pairs * len(mix) * len(premises) / len(examples)
        taken = 0
        for i in rng.permutation(len(premises)):
            if taken + len(mix) / 2 > quota:
                break
            chosen.add(premises[i])
            taken += len(mix)
    return [e for e in examples if e.premise in chosen]
