"""The behaviour suite: its size and Korean, and how each test type is scored (on fixed
probabilities, so each rule is checked without a model)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from klue_nli.data.encoding import load_tokenizer
from klue_nli.model.behaviour import Case, build_suite, obj, run_suite, subject

LABELS = ("entailment", "contradiction", "neutral")


def test_suite_has_at_least_100_cases_over_at_least_4_capabilities():
    suite = build_suite()
    counts = Counter(case.capability for case in suite)
    assert len(suite) >= 100 and len(counts) >= 4
    assert {case.test_type for case in suite} == {"MFT", "INV", "DIR"}
    assert len({case.pairs for case in suite}) == len(suite)  # no duplicates


def test_particles_follow_the_final_consonant():
    assert [subject(w) for w in ("민수", "지현")] == ["민수가", "지현이"]
    assert [obj(w) for w in ("커피", "책")] == ["커피를", "책을"]


def test_sentences_are_built_as_the_capability_says():
    suite = build_suite()
    identity = next(c for c in suite if c.capability == "identity")
    ((premise, hypothesis),) = identity.pairs
    assert premise == hypothesis and identity.expected == "entailment"
    negation = next(c for c in suite if c.capability == "negation")
    assert negation.pairs[0][1].endswith("지 않았다.") and negation.expected == "contradiction"
    order = next(c for c in suite if c.capability == "word_order")
    assert sorted(order.pairs[0][0].split()) == sorted(order.pairs[0][1].split())


def fixed(rows: dict[tuple[str, str], list[float]]):
    def predict_proba(premises, hypotheses):
        return np.array([rows[(p, h)] for p, h in zip(premises, hypotheses, strict=True)])

    return predict_proba


def test_scoring_of_each_test_type():
    cases = [
        Case("mft", "MFT", (("a", "a"),), "entailment"),
        Case("mft", "MFT", (("b", "b"),), "entailment"),
        Case("inv", "INV", (("c", "x"), ("c", "x."))),
        Case("dir", "DIR", (("d", "y"), ("d", "not y")), "contradiction"),
    ]
    rows = {
        ("a", "a"): [0.8, 0.1, 0.1],  # pass
        ("b", "b"): [0.1, 0.1, 0.8],  # fail: neutral
        ("c", "x"): [0.2, 0.5, 0.3],
        ("c", "x."): [0.2, 0.3, 0.5],  # fail: the prediction changed
        ("d", "y"): [0.5, 0.2, 0.3],
        ("d", "not y"): [0.5, 0.3, 0.2],  # pass: P(contradiction) rose
    }
    report = run_suite(fixed(rows), LABELS, cases)
    assert report["mft"] == {"pass_rate": 0.5, "n": 2}
    assert report["inv"] == {"pass_rate": 0.0, "n": 1}
    assert report["dir"] == {"pass_rate": 1.0, "n": 1}
    assert report["overall"] == {"pass_rate": 0.5, "n": 4}


@pytest.mark.parametrize("source", ["kcbert", "e5_folder"])
def test_every_invariance_variant_reaches_the_model_as_other_tokens(request, source):
    """An INV variant the tokenizer turns into the very same ids cannot change a prediction,
    so it would pass for any model: each variant must differ after tokenization, for the
    kcbert and the e5 tokenizer alike (the extra-spaces variant did not, for either)."""
    tokenizer = load_tokenizer(str(request.getfixturevalue(source)), do_lower_case=False)
    for case in (c for c in build_suite() if c.test_type == "INV"):
        encoded = {tuple(tokenizer(p, h)["input_ids"]) for p, h in case.pairs}
        assert len(encoded) == len(case.pairs), case.pairs
