"""The behaviour suite: its size and Korean, and how each test type is scored (on fixed
probabilities, so each rule is checked without a model)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from klue_nli.data.encoding import load_tokenizer
from klue_nli.model.behaviour import HARD, Case, build_suite, obj, run_suite, subject, topic

LABELS = ("entailment", "contradiction", "neutral")


def test_suite_has_30_cases_for_each_of_the_basic_and_the_hard_capabilities():
    suite = build_suite()
    counts = Counter(case.capability for case in suite)
    assert set(HARD) < set(counts) and len(counts) == 11
    assert set(counts.values()) == {30}
    assert {case.test_type for case in suite} == {"MFT", "NOT", "INV", "DIR"}
    assert len({case.pairs for case in suite}) == len(suite)  # no duplicates


def test_particles_follow_the_final_consonant():
    assert [subject(w) for w in ("민수", "지현")] == ["민수가", "지현이"]
    assert [obj(w) for w in ("커피", "책")] == ["커피를", "책을"]
    assert [topic(w) for w in ("영희", "가방")] == ["영희는", "가방은"]


def cases_of(capability: str) -> list[Case]:
    """The suite's cases of `capability`; a capability renamed or dropped is an error here, not
    a loop that passes on nothing."""
    found = [c for c in build_suite() if c.capability == capability]
    assert len(found) == 30, f"{capability}: {len(found)} cases in the suite"
    return found


def test_a_swap_keeps_every_word_stem_and_changes_who_did_it():
    for case in cases_of("subject_object_swap"):
        ((premise, hypothesis),) = case.pairs
        assert case.test_type == "NOT" and case.expected == "entailment"
        doer, done_to, verb = premise.split()
        assert hypothesis.split()[2] == verb and premise != hypothesis
        # the one who was helped is now the one who helps, each with its own particle
        assert hypothesis.split()[0] == subject(done_to[:-1])
        assert hypothesis.split()[1] == obj(doer[:-1])


def test_numbers_antonyms_and_time_order_differ_in_exactly_what_they_test():
    for case in cases_of("numbers"):
        ((premise, hypothesis),) = case.pairs
        changed = [
            (a, b) for a, b in zip(premise.split(), hypothesis.split(), strict=True) if a != b
        ]
        assert len(changed) == 1 and case.expected == "contradiction"  # only the number
    for case in cases_of("antonyms"):
        ((premise, hypothesis),) = case.pairs
        assert premise.split()[:2] == hypothesis.split()[:2] and premise != hypothesis
    order = Counter(c.expected for c in cases_of("time_order"))
    assert order == {"contradiction": 15, "entailment": 15}
    for case in cases_of("time_order"):
        ((premise, hypothesis),) = case.pairs
        assert "후에" in premise
        assert ("전에" in hypothesis) == (case.expected == "entailment")


def test_quantifiers_and_double_negation_mix_their_labels():
    kinds = Counter((c.test_type, c.expected) for c in cases_of("quantifiers"))
    assert kinds == {
        ("MFT", "entailment"): 10,  # 모든 -> 일부
        ("NOT", "entailment"): 10,  # 일부 -/-> 모든
        ("MFT", "contradiction"): 10,  # 모든 vs 어떤 ...도 않았다
    }
    for case in cases_of("double_negation"):
        ((premise, _),) = case.pairs
        assert premise.endswith("지 않은 것은 아니다.")
    assert Counter(c.expected for c in cases_of("double_negation")) == {
        "entailment": 15,
        "contradiction": 15,
    }


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
        Case("not", "NOT", (("e", "f"),), "entailment"),
        Case("not", "NOT", (("g", "h"),), "entailment"),
    ]
    rows = {
        ("a", "a"): [0.8, 0.1, 0.1],  # pass
        ("b", "b"): [0.1, 0.1, 0.8],  # fail: neutral
        ("c", "x"): [0.2, 0.5, 0.3],
        ("c", "x."): [0.2, 0.3, 0.5],  # fail: the prediction changed
        ("d", "y"): [0.5, 0.2, 0.3],
        ("d", "not y"): [0.5, 0.3, 0.2],  # pass: P(contradiction) rose
        ("e", "f"): [0.3, 0.2, 0.5],  # pass: not entailment
        ("g", "h"): [0.6, 0.2, 0.2],  # fail: entailment
    }
    report = run_suite(fixed(rows), LABELS, cases)
    assert report["mft"] == {"pass_rate": 0.5, "n": 2}
    assert report["inv"] == {"pass_rate": 0.0, "n": 1}
    assert report["dir"] == {"pass_rate": 1.0, "n": 1}
    assert report["not"] == {"pass_rate": 0.5, "n": 2}
    assert report["overall"] == {"pass_rate": 0.5, "n": 6}


@pytest.mark.parametrize("source", ["kcbert", "e5_folder"])
def test_every_invariance_variant_reaches_the_model_as_other_tokens(request, source):
    """An INV variant the tokenizer turns into the very same ids cannot change a prediction,
    so it would pass for any model: each variant must differ after tokenization, for the
    kcbert and the e5 tokenizer alike (the extra-spaces variant did not, for either)."""
    tokenizer = load_tokenizer(str(request.getfixturevalue(source)), do_lower_case=False)
    invariance = [c for c in build_suite() if c.test_type == "INV"]
    assert {c.capability for c in invariance} >= {"punctuation_spacing"}, "no INV capability"
    for case in invariance:
        encoded = {tuple(tokenizer(p, h)["input_ids"]) for p, h in case.pairs}
        assert len(encoded) == len(case.pairs), case.pairs
