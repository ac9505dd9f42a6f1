"""KorNLI's XNLI files (kakaobrain/kor-nlu-datasets, `KorNLI/`): MultiNLI's genres in Korean,
human-translated, CC BY-SA 4.0. Their dev file can be added to the training pairs
(data.kornli.add_dev_to_train); their test file is evaluate's out-of-domain set.

Tab-separated with a header `sentence1 sentence2 gold_label`. Sentences hold bare `"`
characters, so the files are read with quoting off: csv's default quoting joins lines and
the counts come out wrong.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from klue_nli.core.errors import DataError
from klue_nli.core.labels import KNOWN_LABELS
from klue_nli.data.klue import Example, read_raw

SPLITS: tuple[str, ...] = ("dev", "test")
SOURCE = "kornli-xnli"  # the source name its pairs carry in meta.json and reports
HEADER = ["sentence1", "sentence2", "gold_label"]


def kornli_filename(split: str) -> str:
    return f"xnli.{split}.ko.tsv"


def parse_tsv(data: bytes, name: str) -> list[Example]:
    """Parse a KorNLI TSV file and check every row; errors name the file and the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    rows = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    if header != HEADER:
        raise DataError(f"{name}: the first line is {header!r}, expected {HEADER!r}")
    examples = []
    for line, row in enumerate(rows, start=2):
        if len(row) != 3:
            raise DataError(f"{name}: line {line} has {len(row)} fields, expected 3")
        premise, hypothesis, label = row
        if label not in KNOWN_LABELS:
            raise DataError(
                f"{name}: line {line} has gold_label {label!r}, not one of {list(KNOWN_LABELS)}"
            )
        examples.append(Example(f"{SOURCE}-{line}", SOURCE, premise, hypothesis, label))
    if not examples:
        raise DataError(f"{name}: holds no pairs")
    return examples


def read_kornli(raw_dir: str | Path, split: str) -> list[Example]:
    return read_raw(Path(raw_dir) / kornli_filename(split), parse_tsv)
