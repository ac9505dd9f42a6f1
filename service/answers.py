"""The service's answers: the original web app's fields, and the batch endpoint's results.

The tutorial rounded each probability to two places and drew each bar from that rounded
value, so "참 0.93" always sits on a bar of "93.0%".
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from klue_nli.labels import KOREAN_NAMES

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Answer(BaseModel):
    """The original web app's fields ("참 0.93", "93.0%"), plus raw probabilities."""

    premise: str
    hypothesis: str
    prediction: str = Field(examples=["참 (entailment)"])
    label: str
    probabilities: dict[str, Probability]
    entailment_data: str
    entailment_width: str
    contradiction_data: str
    contradiction_width: str
    neutral_data: str
    neutral_width: str
    truncated: bool = Field(description="the pair was cut to the model's maximum length")
    model_version: str


class Result(BaseModel):
    label: str
    probabilities: dict[str, Probability]
    truncated: bool = Field(description="the pair was cut to the model's maximum length")


class BatchAnswer(BaseModel):
    model_version: str
    results: list[Result]


def bars(probs: dict[str, float]) -> dict[str, str]:
    """`<label>_data` ("참 0.93") and `<label>_width` ("93.0%"), both from the probability
    rounded to two places, as the tutorial's app computed them."""
    fields = {}
    for label, p in probs.items():
        shown = round(p, 2)
        fields[f"{label}_data"] = f"{KOREAN_NAMES[label]} {shown:.2f}"
        fields[f"{label}_width"] = f"{shown * 100:.1f}%"
    return fields


def tutorial_answer(
    premise: str, hypothesis: str, probs: dict[str, float], truncated: bool, version: str
) -> Answer:
    best = max(probs, key=probs.get)
    return Answer(
        premise=premise,
        hypothesis=hypothesis,
        prediction=f"{KOREAN_NAMES[best]} ({best})",
        label=best,
        probabilities=probs,
        truncated=truncated,
        model_version=version,
        **bars(probs),
    )
