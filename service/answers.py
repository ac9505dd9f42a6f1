"""The service's answers: the original web app's fields, and the batch endpoint's results.

`/api`'s text fields are byte for byte the tutorial's expressions, `f"참 {round(p, 2)}"` and
`f"{round(p, 2) * 100}%"`: "참 0.7" and "70.0%" for 0.7, and "56.99999999999999%" for 0.57
(Python's float arithmetic, kept: clients of the tutorial's app parse these strings).
Beside them, `unsure`: the answer's confidence is below the threshold the model was
calibrated for (klue_nli/network/calibration.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from klue_nli.core.labels import KOREAN_NAMES

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
ANSWER_ID_DOC = "names this answer in POST /feedback (the service keeps its recent answers)"
UNSURE_DOC = (
    "the top probability is below the model's unsure threshold: on validation, answers at "
    "or above it were right at least as often as its calibration's target accuracy"
)


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
    answer_id: str = Field(description=ANSWER_ID_DOC)
    unsure: bool = Field(description=UNSURE_DOC)


class Result(BaseModel):
    label: str
    probabilities: dict[str, Probability]
    truncated: bool = Field(description="the pair was cut to the model's maximum length")
    answer_id: str = Field(description=ANSWER_ID_DOC)
    unsure: bool = Field(description=UNSURE_DOC)


class BatchAnswer(BaseModel):
    model_version: str
    results: list[Result]


class Acknowledged(BaseModel):
    """POST /feedback: the correction is committed, waiting for review."""

    feedback_id: int
    status: str = Field(examples=["pending"])


def bars(probs: dict[str, float]) -> dict[str, str]:
    """`<label>_data` ("참 0.93") and `<label>_width` ("93.0%"): the tutorial's expressions,
    on the probability as a Python float."""
    fields = {}
    for label, p in probs.items():
        fields[f"{label}_data"] = f"{KOREAN_NAMES[label]} {round(float(p), 2)}"
        fields[f"{label}_width"] = f"{round(float(p), 2) * 100}%"
    return fields


def tutorial_answer(
    premise: str,
    hypothesis: str,
    probs: dict[str, float],
    truncated: bool,
    version: str,
    answer_id: str,
    unsure: bool,
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
        answer_id=answer_id,
        unsure=unsure,
        **bars(probs),
    )
