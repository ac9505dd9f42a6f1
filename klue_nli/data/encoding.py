"""The one pair encoding shared by featurize, training batches, evaluate and the service."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from klue_nli.core.errors import UserError, load_failure

if TYPE_CHECKING:  # a serving worker imports neither (klue_nli/inference/tokenizer.py)
    import torch
    from transformers import PreTrainedTokenizerBase


def load_tokenizer(
    name_or_path: str,
    do_lower_case: bool | None = None,
    model_input_names: list[str] | None = None,
) -> PreTrainedTokenizerBase:
    """A fast tokenizer from a Hub id or a folder holding vocab.txt (or a saved tokenizer).

    `do_lower_case=None` keeps what the saved tokenizer says (used for trained model folders).
    `model_input_names` overrides the tokenizer's own (saved with it, so it travels).
    Never build one with `BertTokenizerFast(vocab_file=...)`: in transformers 5 that maps
    every Korean word to [UNK] without a warning.
    """
    from transformers import AutoTokenizer

    kwargs: dict = {} if do_lower_case is None else {"do_lower_case": do_lower_case}
    if model_input_names is not None:
        kwargs["model_input_names"] = model_input_names
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(load_failure("a tokenizer", name_or_path, exc)) from None
    if not tokenizer.is_fast:
        raise UserError(f"{name_or_path!r} has no fast tokenizer; the pipeline needs one")
    return tokenizer


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    premises: Sequence[str],
    hypotheses: Sequence[str],
    max_length: int,
) -> dict[str, list[list[int]]]:
    """Encode exactly as the original tutorial (truncation=True, max_length), unpadded.

    `token_type_ids` only where the model takes them (BERT, ELECTRA); RoBERTa-family
    tokenizers, XLM-R's among them, name only input_ids and attention_mask."""
    types = uses_token_types(tokenizer)
    enc = tokenizer(
        list(premises),
        list(hypotheses),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=types,
    )
    out = {"input_ids": enc["input_ids"]}
    if types:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def uses_token_types(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model the tokenizer belongs to takes segment ids (its own input names)."""
    return "token_type_ids" in tokenizer.model_input_names


def truncated_mask(
    tokenizer: PreTrainedTokenizerBase,
    premises: Sequence[str],
    hypotheses: Sequence[str],
    input_ids: Sequence[Sequence[int]],
    max_length: int,
) -> list[bool]:
    """Which pairs the cap shortened (see cut_at_cap)."""

    def uncapped(rows: list[int]) -> list[int]:
        full = tokenizer(
            [premises[i] for i in rows],
            [hypotheses[i] for i in rows],
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # no "longer than the maximum" warning: finding those is the point
        )["input_ids"]
        return [len(ids) for ids in full]

    return cut_at_cap(input_ids, max_length, uncapped)


def cut_at_cap(
    input_ids: Sequence[Sequence[int]],
    max_length: int,
    uncapped_lengths: Callable[[list[int]], list[int]],
) -> list[bool]:
    """Which pairs the cap shortened. Only a pair that came out exactly at the cap can have
    been cut, so only those (a few percent) are encoded again without the cap
    (`uncapped_lengths(rows)`: their lengths then): one pass over the data, not two."""
    at_cap = [i for i, ids in enumerate(input_ids) if len(ids) == max_length]
    mask = [False] * len(input_ids)
    if not at_cap:
        return mask
    for i, length in zip(at_cap, uncapped_lengths(at_cap), strict=True):
        mask[i] = length > max_length
    return mask


def unk_share(tokenizer: PreTrainedTokenizerBase, input_ids: np.ndarray) -> float:
    """Share of [UNK] among the non-special tokens of a flat id array."""
    special = [t for t in tokenizer.all_special_ids if t != tokenizer.unk_token_id]
    words = input_ids[~np.isin(input_ids, special)]
    return float(np.mean(words == tokenizer.unk_token_id)) if words.size else 0.0


def pad_arrays(
    input_ids: Sequence[Sequence[int] | np.ndarray],
    token_type_ids: Sequence[Sequence[int] | np.ndarray] | None,
    pad_id: int,
    width: int = 0,
) -> dict[str, np.ndarray]:
    """Pad a batch to its own longest pair (dynamic padding), or to `width` where that is
    more, and build the attention mask, as int64 arrays. `token_type_ids=None` (a model
    without segment ids) leaves that input out."""
    width = max(width, *(len(ids) for ids in input_ids))
    n = len(input_ids)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for row, a in enumerate(input_ids):
        ids[row, : len(a)] = a
        mask[row, : len(a)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if token_type_ids is not None:
        types = np.zeros((n, width), dtype=np.int64)
        for row, b in enumerate(token_type_ids):
            types[row, : len(b)] = b
        batch["token_type_ids"] = types
    return batch


def bucket_width(width: int, steps_per_octave: int) -> int:
    """`width` rounded up to one of `steps_per_octave` widths per power of two (with 8: 8, 9,
    ..., 15, 16, 18, ..., 30, 32, 36, ..., 60, 64, 72, ...), so a runtime that compiles kernels
    per input shape meets few widths while the padding added stays under 1/steps_per_octave
    of the tokens. 0: the width as it is."""
    if steps_per_octave <= 0 or width <= steps_per_octave:
        return width
    step = (1 << (width.bit_length() - 1)) // steps_per_octave
    return -(-width // step) * step


def pad_batch(
    input_ids: Sequence[Sequence[int] | np.ndarray],
    token_type_ids: Sequence[Sequence[int] | np.ndarray] | None,
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """`pad_arrays` as PyTorch tensors (training batches)."""
    import torch

    arrays = pad_arrays(input_ids, token_type_ids, pad_id)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def length_chunks(
    lengths: Sequence[int], max_rows: int, max_padding: float = 0.1
) -> list[list[int]]:
    """Indices of a batch's pairs, sorted by length and cut into model calls of at most
    `max_rows` pairs whose padding stays at most `max_padding` of their tokens.

    A batch is padded to its longest pair, so one long pair makes every short one pay for
    its length; similar lengths together cost one call more but fewer padded tokens (the
    service's batches of 32 were 20 % padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        grown = len(current) + 1
        if current and (
            grown > max_rows or 1 - (real + lengths[i]) / (grown * lengths[i]) > max_padding
        ):
            chunks.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
    if current:
        chunks.append(current)
    return chunks
