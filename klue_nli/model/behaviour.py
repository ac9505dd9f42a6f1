"""A Korean behaviour suite in the CheckList style (Ribeiro et al., 2020).

Accuracy on dev says how often the model is right; these checks say *what* it can do, on
sentences built from templates where the answer is known by construction:

- minimum functionality (MFT): a pair whose label is certain must get it;
- not-this-label (NOT): a pair that looks like one label but is not must not get it (HANS's
  lexical-overlap cases, McCoy et al., 2019: every word shared, no entailment);
- invariance (INV): a change that keeps the meaning must not change the prediction;
- directional (DIR): a change with a known direction must move the probability that way.

Five capabilities check the basics (identity, negation, word order, punctuation, the
direction of negation); six check where NLI models are known to fail: subject and object
swapped, numbers, antonyms, quantifiers, double negation and the order of events. Each has
30 cases, and every sentence carries the particles its words need (이/가, 을/를, 은/는).
A low rate on the hard six is a finding about the model, reported as it is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PredictProba = Callable[[Sequence[str], Sequence[str]], np.ndarray]

NAMES = ("민수", "지현", "서준", "하은", "철수", "영희")
# (object, place, past tense, stem for "-지 않았다", past adnominal for "-은 후에")
ACTIONS = (
    ("책", "도서관", "읽었다", "읽", "읽은"),
    ("빵", "시장", "샀다", "사", "산"),
    ("비빔밥", "식당", "먹었다", "먹", "먹은"),
    ("영화", "극장", "보았다", "보", "본"),
    ("커피", "카페", "마셨다", "마시", "마신"),
    ("케이크", "집", "만들었다", "만들", "만든"),
    ("우산", "학교", "빌렸다", "빌리", "빌린"),
    ("열쇠", "공원", "찾았다", "찾", "찾은"),
    ("자전거", "시장", "팔았다", "팔", "판"),
    ("편지", "집", "썼다", "쓰", "쓴"),
)
# What one person does to another (past tense): swapping who does it to whom changes the
# meaning, none of them is symmetric ("만났다" would be).
TRANSITIVE = (
    "도왔다",
    "칭찬했다",
    "불렀다",
    "기다렸다",
    "이겼다",
    "가르쳤다",
    "초대했다",
    "응원했다",
)
# (object, counter, place, past): "책을 세 권 샀다"
COUNTED = (
    ("책", "권", "서점", "샀다"),
    ("사과", "개", "시장", "샀다"),
    ("커피", "잔", "카페", "마셨다"),
    ("표", "장", "극장", "샀다"),
    ("편지", "통", "집", "썼다"),
    ("빵", "개", "빵집", "먹었다"),
)
# Native Korean numerals before a counter; each pair differs.
NUMBER_PAIRS = (("세", "다섯"), ("두", "네"), ("한", "세"), ("네", "여섯"), ("다섯", "일곱"))
# (thing, adjective, its antonym)
ANTONYMS = (
    ("가방", "무겁다", "가볍다"),
    ("방", "넓다", "좁다"),
    ("커피", "뜨겁다", "차갑다"),
    ("연필", "길다", "짧다"),
    ("자동차", "빠르다", "느리다"),
)
GROUPS = ("학생", "손님", "직원", "아이", "선수", "회원")
CASES_PER_CAPABILITY = 30
# The six capabilities where NLI models are known to fail (the other five are the basics).
HARD = (
    "subject_object_swap",
    "numbers",
    "antonyms",
    "quantifiers",
    "double_negation",
    "time_order",
)


def _has_final_consonant(word: str) -> bool:
    last = ord(word[-1]) - 0xAC00
    return 0 <= last < 11172 and last % 28 != 0


def subject(word: str) -> str:
    return word + ("이" if _has_final_consonant(word) else "가")


def obj(word: str) -> str:
    return word + ("을" if _has_final_consonant(word) else "를")


def topic(word: str) -> str:
    return word + ("은" if _has_final_consonant(word) else "는")


@dataclass(frozen=True)
class Case:
    """One check. MFT: `pairs[0]` must be predicted `expected`. NOT: `pairs[0]` must not be
    predicted `expected`. INV: every pair must get the prediction of `pairs[0]`. DIR:
    P(`expected`) must be higher for `pairs[1]` than for `pairs[0]`."""

    capability: str
    test_type: str  # MFT | NOT | INV | DIR
    pairs: tuple[tuple[str, str], ...]
    expected: str | None = None


def _facts() -> list[tuple[str, str, str, str, str, str]]:
    """(name, object, place, past, stem, adnominal), varied over names and actions."""
    combos = itertools.product(range(len(NAMES)), range(len(ACTIONS)))
    chosen = sorted(combos, key=lambda c: ((c[0] * 7 + c[1] * 3) % 11, c))
    return [(NAMES[n], *ACTIONS[a]) for n, a in chosen[:CASES_PER_CAPABILITY]]


def _basics() -> list[Case]:
    cases: list[Case] = []
    for name, thing, place, past, stem, _ in _facts():
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


def _subject_object_swap() -> list[Case]:
    """The same words, roles swapped: "민수가 지현을 도왔다" does not entail
    "지현이 민수를 도왔다"."""
    people = list(itertools.permutations(NAMES, 2))[:CASES_PER_CAPABILITY]
    return [
        Case(
            "subject_object_swap",
            "NOT",
            ((f"{subject(a)} {obj(b)} {verb}.", f"{subject(b)} {obj(a)} {verb}."),),
            "entailment",
        )
        for i, (a, b) in enumerate(people)
        for verb in (TRANSITIVE[i % len(TRANSITIVE)],)
    ]


def _numbers() -> list[Case]:
    """Three books bought is not five books bought."""
    cases = []
    for i, ((thing, counter, place, past), (m, n)) in enumerate(
        itertools.product(COUNTED, NUMBER_PAIRS)
    ):
        name = NAMES[i % len(NAMES)]
        said, other = (m, n) if i % 2 == 0 else (n, m)
        premise = f"{subject(name)} {place}에서 {obj(thing)} {said} {counter} {past}."
        hypothesis = f"{subject(name)} {place}에서 {obj(thing)} {other} {counter} {past}."
        cases.append(Case("numbers", "MFT", ((premise, hypothesis),), "contradiction"))
    return cases


def _antonyms() -> list[Case]:
    """ "민수의 가방은 무겁다" contradicts "민수의 가방은 가볍다"."""
    cases = []
    for i, (name, (thing, adjective, antonym)) in enumerate(itertools.product(NAMES, ANTONYMS)):
        said, other = (adjective, antonym) if i % 2 == 0 else (antonym, adjective)
        pair = (f"{name}의 {topic(thing)} {said}.", f"{name}의 {topic(thing)} {other}.")
        cases.append(Case("antonyms", "MFT", (pair,), "contradiction"))
    return cases


def _quantifiers() -> list[Case]:
    """모든 (all) entails 일부 (some); 일부 does not entail 모든; 모든 contradicts
    어떤 …도 않았다 (none)."""
    cases = []
    for i in range(CASES_PER_CAPABILITY):
        group = GROUPS[i % len(GROUPS)]
        thing, place, past, stem, _ = ACTIONS[i % len(ACTIONS)]
        did = f"{place}에서 {obj(thing)} {past}."
        every, some = f"모든 {subject(group)} {did}", f"일부 {subject(group)} {did}"
        none = f"어떤 {group}도 {place}에서 {obj(thing)} {stem}지 않았다."
        kind = i % 3
        if kind == 0:
            cases.append(Case("quantifiers", "MFT", ((every, some),), "entailment"))
        elif kind == 1:
            cases.append(Case("quantifiers", "NOT", ((some, every),), "entailment"))
        else:
            cases.append(Case("quantifiers", "MFT", ((every, none),), "contradiction"))
    return cases


def _double_negation() -> list[Case]:
    """ "읽지 않은 것은 아니다" (it is not that they did not read) means they read."""
    cases = []
    for i, (name, thing, place, past, stem, _) in enumerate(_facts()):
        start = f"{subject(name)} {place}에서 {obj(thing)}"
        twice = f"{start} {stem}지 않은 것은 아니다."
        if i % 2 == 0:
            cases.append(
                Case("double_negation", "MFT", ((twice, f"{start} {past}."),), "entailment")
            )
        else:
            once = f"{start} {stem}지 않았다."
            cases.append(Case("double_negation", "MFT", ((twice, once),), "contradiction"))
    return cases


def _time_order() -> list[Case]:
    """A 후에 B (B after A) contradicts B 후에 A, and says the same as A, B 전에."""
    cases = []
    orders = [(a, b) for a, b in itertools.permutations(range(len(ACTIONS)), 2) if (a + b) % 3 == 0]
    for i, (a, b) in enumerate(orders[:CASES_PER_CAPABILITY]):
        name = topic(NAMES[i % len(NAMES)])
        first, _, first_past, _, first_done = ACTIONS[a]
        then, _, then_past, then_stem, then_done = ACTIONS[b]
        premise = f"{name} {obj(first)} {first_done} 후에 {obj(then)} {then_past}."
        if i % 2 == 0:
            swapped = f"{name} {obj(then)} {then_done} 후에 {obj(first)} {first_past}."
            cases.append(Case("time_order", "MFT", ((premise, swapped),), "contradiction"))
        else:
            before = f"{name} {obj(then)} {then_stem}기 전에 {obj(first)} {first_past}."
            cases.append(Case("time_order", "MFT", ((premise, before),), "entailment"))
    return cases


BUILDERS = (
    _basics,
    _subject_object_swap,
    _numbers,
    _antonyms,
    _quantifiers,
    _double_negation,
    _time_order,
)


def build_suite() -> list[Case]:
    """The shipped suite: 30 cases for each of 11 capabilities (330 in all)."""
    return [case for builder in BUILDERS for case in builder()]


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
        elif case.test_type == "NOT":
            ok = labels[predicted[0]] != case.expected
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
