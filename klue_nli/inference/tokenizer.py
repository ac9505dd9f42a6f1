"""The predictor's tokenizer: a saved model folder's `tokenizer.json`, run by the `tokenizers`
library directly.

Transformers' fast tokenizers are this same Rust tokenizer behind a Python layer; loading it
without that layer shortens a serving worker's start and spares it transformers' import
(docs/reliability.md). Featurize and
training keep transformers' tokenizer (klue_nli/data/encoding.py); tests/unit/test_tokenizer.py
checks both give the same ids, segment ids and truncation for each model family.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from klue_nli.core.errors import UserError
from klue_nli.data.encoding import cut_at_cap

# What transformers assumes for a tokenizer whose config names no inputs.
DEFAULT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class PairTokenizer:
    """Encodes premise/hypothesis pairs as transformers' `tokenizer(premises, hypotheses,
    truncation=True, max_length=...)` does (longest-first, special tokens, no padding)."""

    def __init__(self, backend, config: dict) -> None:
        """`backend`: a `tokenizers.Tokenizer`; `config`: the folder's tokenizer_config.json."""
        self.backend = backend
        backend.no_padding()
        backend.no_truncation()
        self.model_input_names: list[str] = list(config.get("model_input_names") or DEFAULT_INPUTS)
        self.model_max_length = int(config.get("model_max_length") or 10**30)
        self.side = config.get("truncation_side", "right")
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = backend.token_to_id(pad) if pad is not None else None
        self.pad_token_id: int = 0 if pad_id is None else pad_id
        self._capped_at: int | None = None

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> PairTokenizer:
        from tokenizers import Tokenizer  # the Rust library, without transformers

        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise UserError(f"{model_dir}: no tokenizer.json (save the tokenizer with the model)")
        config_path = model_dir / "tokenizer_config.json"
        try:
            backend = Tokenizer.from_file(str(path))
            config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        except Exception as exc:  # tokenizers raises its own kinds for a damaged file
            raise UserError(f"{model_dir}: cannot load the tokenizer ({exc})") from None
        return cls(backend, config)

    @property
    def uses_token_types(self) -> bool:
        return "token_type_ids" in self.model_input_names

    def _cap(self, max_length: int | None) -> None:
        """Truncate at `max_length` (None: not at all), a setting of the backend: changed only
        when it differs from the last one."""
        if max_length == self._capped_at:
            return
        if max_length is None:
            self.backend.no_truncation()
        else:
            self.backend.enable_truncation(
                max_length, strategy="longest_first", direction=self.side
            )
        self._capped_at = max_length

    def _encode(self, pairs: list[tuple[str, str]], max_length: int | None):
        self._cap(max_length)
        return self.backend.encode_batch(pairs)

    def encode(
        self, premises: Sequence[str], hypotheses: Sequence[str], max_length: int
    ) -> dict[str, list[list[int]]]:
        """`input_ids` (and `token_type_ids` where the model takes them), unpadded."""
        encodings = self._encode(list(zip(premises, hypotheses, strict=True)), max_length)
        out = {"input_ids": [e.ids for e in encodings]}
        if self.uses_token_types:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        return out

    def truncated(
        self,
        premises: Sequence[str],
        hypotheses: Sequence[str],
        input_ids: Sequence[Sequence[int]],
        max_length: int,
    ) -> list[bool]:
        """Which pairs the cap shortened (klue_nli/data/encoding.py: cut_at_cap)."""

        def uncapped(rows: list[int]) -> list[int]:
            pairs = [(premises[i], hypotheses[i]) for i in rows]
            return [len(e.ids) for e in self._encode(pairs, None)]

        return cut_at_cap(input_ids, max_length, uncapped)

    def tokenize(self, text: str) -> list[str]:
        """The text's pieces, without special tokens."""
        self._cap(None)
        return self.backend.encode(text, add_special_tokens=False).tokens
