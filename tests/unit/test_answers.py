"""The /api answer on fixed probabilities, formatted as the tutorial's app did."""

from __future__ import annotations

from service.answers import bars, tutorial_answer


def test_bars_use_the_probability_rounded_to_two_places():
    probs = {"entailment": 0.926, "contradiction": 0.0574, "neutral": 0.0166}
    assert bars(probs) == {
        "entailment_data": "참 0.93",
        "entailment_width": "93.0%",  # from 0.93, not 92.6 % from the raw value
        "contradiction_data": "거짓 0.06",
        "contradiction_width": "6.0%",
        "neutral_data": "중립 0.02",
        "neutral_width": "2.0%",
    }


def test_fields_are_the_tutorials_strings_byte_for_byte():
    """Literal strings, as the tutorial's f"참 {round(p, 2)}" and f"{round(p, 2) * 100}%" print
    them: no padding to two places, and Python's float noise where it has some."""
    assert bars({"entailment": 0.7}) == {"entailment_data": "참 0.7", "entailment_width": "70.0%"}
    assert bars({"entailment": 0.57})["entailment_width"] == "56.99999999999999%"
    assert bars({"neutral": 0.996}) == {"neutral_data": "중립 1.0", "neutral_width": "100.0%"}
    assert bars({"contradiction": 0.0}) == {
        "contradiction_data": "거짓 0.0",
        "contradiction_width": "0.0%",
    }
    assert bars({"entailment": 0.29})["entailment_width"] == "28.999999999999996%"


def test_tutorial_answer_fields():
    probs = {"entailment": 0.2, "contradiction": 0.7, "neutral": 0.1}
    answer = tutorial_answer(
        "전제.", "가설.", probs, truncated=True, version="3", answer_id="a" * 32, unsure=True
    )
    assert answer.prediction == "거짓 (contradiction)" and answer.label == "contradiction"
    assert answer.unsure is True  # beside the tutorial's fields, which it leaves as they were
    assert answer.probabilities == probs  # raw, unrounded, for clients that compute
    assert answer.truncated is True and answer.model_version == "3"
    assert answer.contradiction_data == "거짓 0.7" and answer.contradiction_width == "70.0%"
