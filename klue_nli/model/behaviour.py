"""A small Korean behaviour suite in the CheckList style (Ribeiro et al., 2020).

Accuracy on dev says how often the model is right; these checks say *what* it can do, on
sentences built from templates where the answer is known by construction:

- minimum functionality (MFT): a pair whose label is certain must get it;
- invariance (INV): a change that keeps the meaning must not change the prediction;
- directional (DIR): a change with a known direction must move the probability that way.

The sentences are "<who> <where>에서 <what> <did>." with the right particles (이/가, 을/를),
so every case is grammatical Korean.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PredictProba = Callable[[Sequence[str], Sequence[str]], np.ndarray]

NAMES = ("민수", "지현", "서준", "하은", "철수", "영희")
# (object, place, past tense, stem for the "-지 않았다" negation)
ACTIONS = (
    ("책", "도서관", "읽었다", "읽"),
    ("빵", "시장", "샀다", "사"),
    ("비빔밥", "식당", "먹었다", "먹"),
    ("영화", "극장", "보았다", "보"),
    ("커피", "카페", "마셨다", "마시"),
    ("케이크", "집", "만들었다", "만들"),
    ("우산", "학교", "빌렸다", "빌리"),
    ("열쇠", "공원", "찾았다", "찾"),
    ("자전거", "시장", "팔았다", "팔"),
    ("편지", "집", "썼다", "쓰"),
)
CASES_PER_CAPABILITY = 30


def _has_final_consonant(word: str) -> bool:
    last = ord(word[-1]) - 0xAC00
    return 0 <= last < 11172 and last % 28 != 0


def subject(word: str) -> str:
    return word + ("이" if _has_final_consonant(word) else "가")


def obj(word: str) -> str:
    return word + ("을" if _has_final_consonant(word) else "를")


@dataclass(frozen=True)
class Case:
    """One check. MFT: `pairs[0]` must be predicted `expected`. INV: every pair must get
    the prediction of `pairs[0]`. DIR: P(`expected`) must be higher for `pairs[1]` than for
    `pairs[0]`."""

    capability: str
    test_type: str  # MFT | INV | DIR
    pairs: tuple[tuple[str, str], ...]
    expected: str | None = None


def _facts() -> list[tuple[str, str, str, str, str]]:
    """(name, object, place, past, stem), varied over names and actions."""
    combos = itertools.product(range(len(NAMES)), range(len(ACTIONS)))
    chosen = sorted(combos, key=lambda c: ((c[0] * 7 + c[1] * 3) % 11, c))
    return [(NAMES[n], *ACTIONS[a]) for n, a in chosen[:CASES_PER_CAPABILITY]]


def build_suite() -> list[Case]:
    """The shipped suite: 30 cases for each of 5 capabilities (150 in all)."""
    cases: list[Case] = []
    for name, thing, place, past, stem in _facts():
        sentence = f"{subject(name)} {place}에서 {obj(thing)} {past}."
        negated = f"{subject(name)} {place}에서 {obj(thing)} {stem}지 않았다."
        reordered = f"{place}에서 {obj(thing)} {subject(name)} {past}."
        bare = f"{subject(name)} {obj(thing)} {past}"  # what the premise says, shorter
        cases += [
            Case("identity", "MFT", ((sentence, sentence),), "entailment"),
            Case("negation", "MFT", ((sentence, negated),), "contradiction"),
            Case("word_order", "MFT", ((sentence, reordered),), "entailment"),
            Case(
                "punctuation_spacing",
                "INV",
                (
                    (sentence, bare),
                    (sentence, bare + "."),
                    (sentence, bare + " !"),
                    # a comma after the subject: other tokens, the same meaning (extra spaces
                    # were here, but every tokenizer drops them: a variant that cannot fail)
                    (sentence, f"{subject(name)}, {obj(thing)} {past}"),
                ),
            ),
            Case(
                "negation_raises_contradiction",
                "DIR",
                ((sentence, bare), (sentence, negated)),
                "contradiction",
            ),
        ]
    return cases


def run_suite(predict_proba: PredictProba, labels: Sequence[str], cases: list[Case]) -> dict:
    """Pass rate per capability and overall: {"overall": {...}, "<capability>": {...}}."""
    flat = [pair for case in cases for pair in case.pairs]
    probs = predict_proba([p for p, _ in flat], [h for _, h in flat])
    index = {label: i for i, label in enumerate(labels)}
    results: dict[str, list[bool]] = {}
    at = 0
    for case in cases:
        rows = probs[at : at + len(case.pairs)]
        at += len(case.pairs)
        predicted = rows.argmax(axis=1)
        if case.test_type == "MFT":
            ok = labels[predicted[0]] == case.expected
        elif case.test_type == "INV":
            ok = bool(np.all(predicted == predicted[0]))
        else:
            column = index[case.expected]
            ok = bool(rows[1, column] > rows[0, column])
        results.setdefault(case.capability, []).append(bool(ok))
    report = {
        capability: {"pass_rate": float(np.mean(oks)), "n": len(oks)}
        for capability, oks in results.items()
    }
    every = [ok for oks in results.values() for ok in oks]
    report["overall"] = {"pass_rate": float(np.mean(every)), "n": len(every)}
    return report
