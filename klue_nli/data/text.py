"""The one rule for input text, applied by featurize, evaluate (through the Predictor) and the
service alike: NFC normalisation, and a refusal of text the model cannot read.

A pair typed on a Mac (NFD Hangul jamo) and the same pair from the KLUE files (NFC) must reach
the tokenizer as the same characters, or the model sees different tokens for the same words.
"""

from __future__ import annotations

import unicodedata


class InvalidText(ValueError):
    """Text the pipeline refuses; the message says why in a few words."""


# Tab, newline and carriage return are ordinary whitespace in a pasted sentence.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def clean_text(value: str) -> str:
    """`value` NFC-normalised, or InvalidText: a lone surrogate, a control character, or
    nothing but whitespace."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise InvalidText("contains invalid Unicode (a lone surrogate)")
    value = unicodedata.normalize("NFC", value)
    if any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in value):
        raise InvalidText("contains control characters")
    if not value.strip():
        raise InvalidText("must not be empty or only whitespace")
    return value


def clean_pair(premise: str, hypothesis: str) -> tuple[str, str]:
    """Both texts cleaned; InvalidText names which one failed."""
    try:
        p = clean_text(premise)
    except InvalidText as exc:
        raise InvalidText(f"premise {exc}") from None
    try:
        h = clean_text(hypothesis)
    except InvalidText as exc:
        raise InvalidText(f"hypothesis {exc}") from None
    return p, h
