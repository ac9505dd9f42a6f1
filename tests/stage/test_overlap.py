"""No evaluation text reaches training as a copy of an evaluation premise
(klue_nli/data/overlap.py), on the official files: every variant of a real dev premise that
a page user could send (spaces, punctuation, one edited character) is matched, and the train
file's own premises are kept."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klue_nli.core.params import params_from_dict
from klue_nli.data.klue import read_split
from klue_nli.data.kornli import read_kornli
from klue_nli.data.overlap import NearDuplicates, text_key
from tests.conftest import defaults

THRESHOLD = params_from_dict(defaults()).data.near_duplicate_threshold
SPACES = st.text(alphabet=" \t\u3000", min_size=1, max_size=3)
HANGUL = st.integers(0xAC00, 0xD7A3).map(chr)


@pytest.fixture(scope="module")
def evaluation(klue_full_dir, kornli_dir):
    dev = sorted({e.premise for e in read_split(klue_full_dir, "dev")})
    test = sorted({e.premise for e in read_kornli(kornli_dir, "test")})
    return dev, NearDuplicates({"dev": dev, "out_of_domain": test}, THRESHOLD)


@st.composite
def variant(draw, premise: str) -> str:
    """What a page user could send for `premise`: spaces added, punctuation changed or
    full-width, or one character replaced, dropped or added."""
    kind = draw(st.sampled_from(["spaces", "doubled", "punctuation", "edit"]))
    if kind == "spaces":
        return draw(SPACES) + premise + draw(SPACES)
    at = draw(st.integers(0, len(premise) - 1))
    if kind == "doubled":
        return premise[:at] + draw(SPACES) + premise[at:]
    if kind == "punctuation":
        ending = draw(st.sampled_from(["．", "。", "!", "?", "", ".."]))
        return premise.rstrip(".") + ending
    how = draw(st.sampled_from(["replace", "drop", "add"]))
    char = draw(HANGUL)
    if how == "replace":
        return premise[:at] + char + premise[at + 1 :]
    if how == "drop":
        return premise[:at] + premise[at + 1 :]
    return premise[:at] + char + premise[at:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_variant_of_a_dev_premise_passes(evaluation, data):
    dev, index = evaluation
    premise = data.draw(st.sampled_from(dev))
    sent = data.draw(variant(premise))
    assert index.match(sent) == "dev", (premise, sent)


def test_the_keys_fold_what_a_reader_would_not_see():
    assert text_key("  오늘은  비가\t온다．") == text_key("오늘은 비가 온다.")
    assert text_key("ＡＢＣ 테스트") == text_key("abc 테스트")
    assert text_key("오늘은 비가 온다.") != text_key("오늘은 눈이 온다.")


def test_the_train_files_own_premises_are_kept(evaluation, klue_full_dir):
    """Distinct genuine premises stay: of the train file's premises at most one in 5,000
    lies this close to a dev or out-of-domain test premise (on the official file: one, the
    same review sentence as a dev premise with one word more)."""
    _, index = evaluation
    train = sorted({e.premise for e in read_split(klue_full_dir, "train")})
    matched = [p for p in train if index.match(p) is not None]
    assert len(train) > 500
    assert len(matched) <= max(1, len(train) // 5000), matched


def test_distinct_dev_premises_do_not_match_each_other(evaluation):
    """Half of dev indexed, the other half looked up: no genuine premise is taken for
    another."""
    dev, _ = evaluation
    half = NearDuplicates({"dev": dev[1::2]}, THRESHOLD)
    assert [p for p in dev[0::2] if half.match(p) is not None] == []
