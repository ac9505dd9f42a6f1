"""Featurize stage on the real KLUE sample with the real kcbert tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import BertTokenizerFast

from klue_nli.core.errors import ParamsError, UserError
from klue_nli.data.encoding import (
    bucket_width,
    encode_pairs,
    length_chunks,
    load_tokenizer,
    pad_arrays,
    pad_batch,
    truncated_mask,
    unk_share,
)
from klue_nli.data.features import FeatureSplit, split_file
from klue_nli.data.klue import (
    Example,
    clean_examples,
    parse_examples,
    read_split,
    split_by_premise,
    split_filename,
    subset_by_premise,
)
from stages.download import download
from stages.featurize import featurize


@pytest.fixture
def raw(workdir, make_params):
    download(make_params())
    return workdir


def test_features_are_the_original_encoding_unpadded(raw, make_params, kcbert):
    params = make_params()
    stats = featurize(params)
    tokenizer = load_tokenizer(kcbert, do_lower_case=False)
    _, val = split_by_premise(read_split("data/raw", "train"), params.data.val_fraction)
    features = FeatureSplit.load(split_file("data/features", "val"))
    assert len(features) == len(val) == stats["val"]["records"]
    for i in (0, 7, len(val) - 1):
        expected = tokenizer(val[i].premise, val[i].hypothesis, truncation=True, max_length=64)
        ids, types = features.pair(i)
        assert ids.tolist() == expected["input_ids"]
        assert types.tolist() == expected["token_type_ids"]
    assert features.lengths.max() <= 64
    assert features.lengths.min() < 64  # stored unpadded
    assert features.labels.tolist()[:3] == [params.label2id[e.label] for e in val[:3]]
    # dev is evaluate's alone: featurize neither reads nor caches it
    assert not split_file("data/features", "dev").exists() and "dev" not in stats
    assert stats["train"]["truncated"] > 0  # the sample has pairs longer than 64
    assert stats["train"]["dropped"] == 0
    meta = json.loads((raw / "data/features/meta.json").read_text())
    assert meta == stats
    # validation: about 5 % of the train file's premises, with all their pairs, none in train
    train_file = read_split("data/raw", "train")
    assert stats["train"]["records"] + stats["val"]["records"] == len(train_file)
    total = stats["train"]["premises"] + stats["val"]["premises"]
    assert total == len({e.premise for e in train_file})
    assert stats["val"]["premises"] == round(total * params.data.val_fraction)
    assert len(FeatureSplit.load(split_file("data/features", "val"))) == stats["val"]["records"]
    # the tokenizer travels with the features, with its cap
    saved = load_tokenizer("data/features/tokenizer")
    assert saved.model_max_length == 64


@pytest.mark.parametrize("cap", [32, 48, 64])
def test_single_pass_truncation_count_equals_encoding_everything_twice(kcbert, klue_dir, cap):
    tokenizer = load_tokenizer(kcbert, do_lower_case=False)
    dev = read_split(klue_dir, "dev")
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    enc = encode_pairs(tokenizer, premises, hypotheses, cap)
    full = tokenizer(premises, hypotheses)["input_ids"]
    expected = sum(len(ids) > cap for ids in full)
    assert 0 < expected < len(dev)  # some cut, some not: both branches are exercised
    mask = truncated_mask(tokenizer, premises, hypotheses, enc["input_ids"], cap)
    assert mask == [len(ids) > cap for ids in full]
    assert sum(mask) == expected


def test_unk_share_of_the_real_tokenizer_on_the_sample_is_below_one_percent(raw, make_params):
    stats = featurize(make_params())
    assert stats["train"]["unk_share"] < 0.01
    assert stats["val"]["unk_share"] < 0.01


def test_unk_guard_catches_the_transformers5_vocab_file_trap(raw, kcbert, klue_dir):
    """BertTokenizerFast(vocab_file=...) maps Korean to [UNK]: the guard must see it."""
    from pathlib import Path

    vocab = Path(kcbert) / "vocab.txt"
    if not vocab.exists():
        from huggingface_hub import hf_hub_download

        vocab = Path(hf_hub_download(kcbert, "vocab.txt"))
    trap = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=False)
    dev = read_split("data/raw", "dev")[:50]
    enc = encode_pairs(trap, [e.premise for e in dev], [e.hypothesis for e in dev], 64)
    flat = np.concatenate([np.asarray(x) for x in enc["input_ids"]])
    assert unk_share(trap, flat) > 0.5


def test_lowercasing_tokenizer_is_refused_with_a_clear_error(raw, make_params):
    # do_lower_case strips accents, which splits Hangul into jamo: nearly all [UNK]
    params = make_params(model={"do_lower_case": True})
    with pytest.raises(UserError, match=r"are \[UNK\] .*featurize.max_unk_share"):
        featurize(params)
    assert not (raw / "data/features").exists()


def test_max_seq_length_beyond_the_model_is_rejected(raw, make_params):
    with pytest.raises(ParamsError, match=r"featurize.max_seq_length: 512 exceeds .* \(300\)"):
        featurize(make_params(featurize={"max_seq_length": 512}))


def test_pad_batch_pads_to_the_longest_pair():
    batch = pad_batch([[2, 5, 3], [2, 3]], [[0, 0, 1], [0, 1]], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 1, 0]]


def test_pad_arrays_pads_to_a_given_width_and_never_cuts():
    ids = [[2, 5, 3], [2, 3]]
    assert pad_arrays(ids, None, 0, width=4)["input_ids"].shape == (2, 4)
    assert pad_arrays(ids, None, 0, width=2)["input_ids"].shape == (2, 3)
    batch = pad_arrays(ids, [[0, 0, 1], [0, 1]], 0, width=4)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 0], [0, 1, 0, 0]]


def test_bucket_widths_are_few_and_add_at_most_an_eighth():
    widths = {bucket_width(w, 8) for w in range(1, 129)}
    assert len(widths) == 8 + 8 * 4  # 1..8, then 8 per power of two up to 128
    for w in range(1, 129):
        assert w <= bucket_width(w, 8) < w * 9 / 8
    assert [bucket_width(w, 8) for w in (13, 17, 33, 65, 127)] == [13, 18, 36, 72, 128]
    assert bucket_width(37, 0) == 37  # off: the width as it is


def test_feature_split_roundtrip(tmp_path):
    split = FeatureSplit.from_lists([[2, 7, 3], [2, 3]], [[0, 0, 1], [0, 1]], [2, 0])
    split.save(tmp_path / "x.safetensors")
    back = FeatureSplit.load(tmp_path / "x.safetensors")
    assert back.pair(1)[0].tolist() == [2, 3]
    assert back.labels.tolist() == [2, 0]
    assert back.lengths.tolist() == [3, 2]


def example(premise: str, hypothesis: str = "가설.", label: str = "neutral") -> Example:
    return Example("g", "wikipedia", premise, hypothesis, label)


def test_validation_split_is_grouped_by_premise_and_independent_of_order():
    examples = [example(f"전제 {i}.", f"가설 {j}.") for i in range(40) for j in range(3)]
    train, val = split_by_premise(examples, 0.1)
    assert len(val) == 12 and len(train) == 108  # 4 of 40 premises, 3 pairs each
    assert not {e.premise for e in train} & {e.premise for e in val}
    again_train, again_val = split_by_premise(examples[::-1], 0.1)
    assert {e.premise for e in again_val} == {e.premise for e in val}
    assert len(again_train) == len(train)


def test_one_text_rule_normalises_and_drops_what_the_service_refuses():
    nfd = "\u1100\u1161\u11a8"  # 각 as three jamo (NFD), as macOS writes it
    kept, dropped = clean_examples(
        [
            example(nfd + " 전제."),
            example("  "),
            example("전제.", "\t\n"),
            example("제어\x07문자."),
            example("정상 전제.", "정상\t가설.\n"),
        ]
    )
    assert dropped == 3
    assert [e.premise for e in kept] == ["각 전제.", "정상 전제."]
    assert kept[1].hypothesis == "정상\t가설.\n"  # tab and newline are ordinary whitespace


def test_length_chunks_group_similar_lengths_within_the_limits():
    lengths = [22, 12, 19, 17, 12, 22, 19, 17, 40]
    chunks = length_chunks(lengths, max_rows=3, max_padding=0.1)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))  # each pair once
    for chunk in chunks:
        assert len(chunk) <= 3
        longest = max(lengths[i] for i in chunk)
        assert 1 - sum(lengths[i] for i in chunk) / (len(chunk) * longest) <= 0.1
    grouped = [[lengths[i] for i in c] for c in chunks]
    assert grouped == [[12, 12], [17, 17, 19], [19, 22, 22], [40]]
    # no limit on padding: sorted, cut by rows only
    assert [len(c) for c in length_chunks(lengths, max_rows=4, max_padding=1.0)] == [4, 4, 1]
    assert length_chunks([], max_rows=4) == []


def test_the_train_file_names_its_source_genre_and_dev_source():
    """The official train file's records say `genre`, dev's `source`: both are read."""
    records = [
        {"guid": "t0", "genre": "NSMC", "premise": "a", "hypothesis": "b", "gold_label": "neutral"},
        {
            "guid": "d0",
            "source": "airbnb",
            "premise": "c",
            "hypothesis": "d",
            "gold_label": "entailment",
        },
    ]
    examples = parse_examples(json.dumps(records).encode(), "inline")
    assert [e.source for e in examples] == ["NSMC", "airbnb"]


def _mixes(examples: list[Example]) -> dict[str, tuple[str, ...]]:
    by_premise: dict[str, list[str]] = {}
    for e in examples:
        by_premise.setdefault(e.premise, []).append(e.label)
    return {p: tuple(sorted(labels)) for p, labels in by_premise.items()}


def test_train_subset_is_whole_premises_stratified_seeded_and_in_file_order():
    labels = ("entailment", "contradiction", "neutral")
    examples = []
    for i in range(900):  # 300 premises of one label each, then 30 with two entailments
        examples.append(Example(f"g{i}", "NSMC", f"p{i // 3}", f"h{i}", labels[i % 3]))
    for i in range(30):
        for label in ("entailment", "entailment", "contradiction"):
            examples.append(Example(f"x{i}{label}", "airbnb", f"q{i}", f"h{label}", label))
    subset = subset_by_premise(examples, 330, seed=7)
    assert abs(len(subset) - 330) <= 3
    mixes, whole = _mixes(subset), _mixes(examples)
    assert all(mixes[p] == whole[p] for p in mixes)  # every premise with all its pairs
    # each label mix in proportion: 30 of the 300 balanced premises, 3 of the 30 others
    assert sum(len(m) == 3 and len(set(m)) == 3 for m in mixes.values()) == 100
    assert sum(len(set(m)) == 2 for m in mixes.values()) == 10
    assert subset == [e for e in examples if e in set(subset)]  # the file's order
    assert subset_by_premise(examples, 330, seed=7) == subset
    assert subset_by_premise(examples, 330, seed=8) != subset
    assert subset_by_premise(examples, 10_000, seed=7) == examples


def test_featurize_takes_the_subset_after_the_validation_split(raw, make_params):
    full = featurize(make_params())
    val_full = FeatureSplit.load(split_file("data/features", "val"))
    stats = featurize(make_params(data={"train_pairs": 600}))
    val = FeatureSplit.load(split_file("data/features", "val"))
    assert stats["val"] == full["val"]  # the same validation set whatever the size
    assert np.array_equal(val.input_ids, val_full.input_ids)
    assert abs(stats["train"]["records"] - 600) <= 3
    assert stats["train_pairs_available"] == full["train"]["records"]
    assert sum(stats["train"]["by_source"].values()) == stats["train"]["records"]


def test_the_real_train_file_through_download_and_featurize(workdir, make_params, klue_full_dir):
    """The official train file (24,998 pairs) passes the official checksum as it is, and every
    split of it gets its six text sources (the file says `genre`)."""
    from stages.download import OFFICIAL, verify

    train_file = klue_full_dir / split_filename("train")
    verify(train_file.read_bytes(), OFFICIAL["train"], str(train_file))  # no waiver needed
    params = make_params(data={"mirror": str(klue_full_dir)})
    download(params)
    stats = featurize(params)
    assert stats["train"]["records"] + stats["val"]["records"] == 24_998
    assert 1_150 <= stats["val"]["records"] <= 1_350  # 5 % of the premises, with their pairs
    sources = {"NSMC", "airbnb", "policy", "wikinews", "wikipedia", "wikitree"}
    for split in ("train", "val"):
        assert set(stats[split]["by_source"]) == sources, split
    train, val = split_by_premise(read_split("data/raw", "train"), params.data.val_fraction)
    assert not {e.premise for e in train} & {e.premise for e in val}


def test_kornli_dev_joins_training_only_as_its_own_source(raw, make_params):
    """data.kornli.add_dev_to_train: the 2,490 XNLI dev pairs are training pairs, counted as
    their own source; validation is the same KLUE premises with or without them."""
    without = featurize(make_params(data={"train_pairs": 600}))
    val_without = FeatureSplit.load(split_file("data/features", "val"))
    stats = featurize(make_params(data={"train_pairs": 600, "kornli": {"add_dev_to_train": True}}))
    assert stats["extra_train"] == {"kornli-xnli": 2_490}
    assert stats["train"]["by_source"]["kornli-xnli"] == 2_490
    assert stats["train"]["records"] == without["train"]["records"] + 2_490
    assert "kornli-xnli" not in stats["val"]["by_source"]
    assert stats["val"] == without["val"]
    val = FeatureSplit.load(split_file("data/features", "val"))
    assert np.array_equal(val.input_ids, val_without.input_ids)
    assert len(FeatureSplit.load(split_file("data/features", "train")).labels) == (
        stats["train"]["records"] - stats["train"]["dropped"]
    )


def test_accepted_feedback_joins_training_only_as_its_own_source(raw, make_params):
    """paths.feedback_pairs (klue-nli feedback export): its pairs are training pairs of
    their own source; one whose premise is a validation premise, or a near-duplicate of one,
    is left out; validation is unchanged."""
    params = make_params(data={"train_pairs": 600})
    without = featurize(params)
    _, val = split_by_premise(read_split("data/raw", "train"), params.data.val_fraction)
    rows = [
        {"feedback_id": 1, "premise": "새로운 전제 하나", "hypothesis": "가설", "label": "neutral"},
        {
            "feedback_id": 2,
            "premise": "새로운 전제 둘",
            "hypothesis": "가설",
            "label": "entailment",
        },
        {"feedback_id": 3, "premise": val[0].premise, "hypothesis": "가설", "label": "neutral"},
    ]
    # near-copies of a validation premise: spaced, and with one character changed
    for i, premise in enumerate((f" {val[0].premise}  ", "가" + val[0].premise[1:]), 4):
        rows.append({"feedback_id": i, "premise": premise, "hypothesis": "h", "label": "neutral"})
    export = Path(params.paths.feedback_pairs)
    export.parent.mkdir(parents=True, exist_ok=True)
    export.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    stats = featurize(params)
    assert stats["extra_train"] == {"feedback": 2}
    assert stats["feedback_left_out_as_validation"] == 3
    assert stats["train"]["by_source"]["feedback"] == 2
    assert stats["train"]["records"] == without["train"]["records"] + 2
    assert stats["val"] == without["val"]
