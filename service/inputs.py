"""What each POST route accepts, as pydantic models: the one place the limits of a request are
stated (the contract middleware validates with them, the OpenAPI document shows them).

The limits come from params.yaml's `serve` and `feedback` sections, read once here from the
project folder this package sits in (a checkout, or a Bento's root, where bentofile.yaml puts
params.yaml beside service/): the route decorators need them when the service is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from klue_nli.core.params import PARAMS_FILE, load_params
from klue_nli.data.text import clean_text

PARAMS = load_params(Path(__file__).resolve().parents[1] / PARAMS_FILE)
SERVE = PARAMS.serve

# The rule of clean_text (klue_nli/data/text.py) as a JSON Schema pattern, so the OpenAPI
# document states it: no control characters but tab/newline/CR, and at least one non-space.
_OK = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
TEXT_PATTERN = rf"^{_OK}*[^\s\x00-\x1F\x7F-\x9F]{_OK}*$"
Text = Annotated[
    str,
    Field(min_length=1, max_length=SERVE.max_text_chars, pattern=TEXT_PATTERN),
    AfterValidator(clean_text),
]


def _whole_unicode(value: str) -> str:
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise ValueError("must be valid Unicode (no lone surrogates)")
    return value


# A correction's note: no control characters (PostgreSQL refuses a NUL in text) and no lone
# surrogates (no database stores one), as Text, but it may be empty.
MAX_NOTE_CHARS = 500
Note = Annotated[
    str,
    Field(max_length=MAX_NOTE_CHARS, pattern=rf"^{_OK}*$"),
    AfterValidator(_whole_unicode),
]
# what /api and /predict hand out: uuid4's 32 hex digits
ANSWER_ID = r"^[0-9a-f]{32}$"


class Pair(BaseModel):
    """One premise/hypothesis pair (POST /api)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    premise: Text
    hypothesis: Text


class Batch(BaseModel):
    """Several pairs (POST /predict)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    pairs: list[Pair] = Field(min_length=1, max_length=SERVE.max_pairs_per_request)


class Correction(BaseModel):
    """POST /feedback: the label a user says is right, for an answer the service gave
    (`answer_id`) or for a pair (`premise` and `hypothesis`), with an optional note."""

    # The rule of the validator below, in the schema too (so the OpenAPI document says it):
    # an answer id without a pair, or a premise with its hypothesis.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["answer_id"],
                    "properties": {"label": {}, "answer_id": {}, "note": {}},
                    "additionalProperties": False,
                },
                {"required": ["premise", "hypothesis"]},
            ]
        },
    )
    label: Literal[tuple(PARAMS.labels)]  # type: ignore[valid-type]
    answer_id: Annotated[str, Field(pattern=ANSWER_ID)] = None  # type: ignore[assignment]
    premise: Text = None  # type: ignore[assignment]
    hypothesis: Text = None  # type: ignore[assignment]
    note: Note = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _names_what_it_corrects(self) -> Correction:
        if (self.premise is None) != (self.hypothesis is None):
            raise ValueError("premise and hypothesis come together")
        if self.answer_id is None and self.premise is None:
            raise ValueError("name the answer_id it corrects, or send the premise and hypothesis")
        return self
