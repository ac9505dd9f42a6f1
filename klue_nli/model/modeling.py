"""The plain model: a sequence-pair classifier from an encoder checkpoint (BERT, RoBERTa,
XLM-RoBERTa or ELECTRA, through the Auto classes), pretrained or randomly initialised."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from klue_nli.core.errors import UserError, load_failure
from klue_nli.core.params import ModelParams
from klue_nli.data.encoding import load_tokenizer
from klue_nli.model.encoders import resolve
from klue_nli.model.quiet import without_load_report
from klue_nli.network.pooling import with_pooling

# The encoder families the KLUE baselines use: BERT (kcbert-base, klue/bert-base,
# multilingual-e5-small), RoBERTa (klue/roberta-*), XLM-RoBERTa (xlm-roberta-base), ELECTRA
# (KoELECTRA). Each has a ...ForSequenceClassification head in transformers and is tested end
# to end here.
SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "electra")

# Families that count positions from pad_token_id + 1 (fairseq's convention).
PADDING_OFFSET_TYPES = ("roberta", "xlm-roberta")

# What a local checkpoint folder may hold its weights in (single file or sharded).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def new_params(config: PretrainedConfig) -> tuple[str, ...]:
    """Parameters a pretrained checkpoint need not have: the new 3-way head, and the pooler,
    which masked-LM-only checkpoints leave out (transformers initialises it anew)."""
    return ("classifier.", f"{config.model_type}.pooler.", "pooler.")


def usable_positions(config: PretrainedConfig) -> int:
    """The longest input the encoder takes: RoBERTa and XLM-RoBERTa count positions from
    pad_token_id + 1, so their 514 position embeddings hold 512 tokens."""
    offset = config.pad_token_id + 1 if config.model_type in PADDING_OFFSET_TYPES else 0
    return int(config.max_position_embeddings) - offset


def build_model(model_params: ModelParams, labels: tuple[str, ...], tokenizer) -> torch.nn.Module:
    """The checkpoint with a fresh 3-way head, or (init: random) a small encoder of the same
    family, its head reading `model.pooling` (klue_nli/network/pooling.py).

    `tokenizer` is the one the features were encoded with. The label map and the pooling go
    into the config, so `save_pretrained` carries them to evaluate and serving.
    """
    return with_pooling(_classifier(model_params, labels, tokenizer), model_params.pooling)


def _classifier(model_params: ModelParams, labels: tuple[str, ...], tokenizer) -> PreTrainedModel:
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    source = resolve(model_params.name_or_path)
    config = load_config(source)
    if model_params.init == "pretrained":
        _check_vocabulary(source, config, tokenizer, model_params.do_lower_case)
        return _load_pretrained(source, id2label, label2id)
    size = model_params.random
    config.update(
        {
            "num_hidden_layers": size.num_hidden_layers,
            "hidden_size": size.hidden_size,
            "num_attention_heads": size.num_attention_heads,
            "intermediate_size": size.intermediate_size,
            "vocab_size": len(tokenizer),
            "num_labels": len(labels),
            "id2label": id2label,
            "label2id": label2id,
        }
    )
    model = AutoModelForSequenceClassification.from_config(config)
    model.config.architectures = [type(model).__name__]
    return model


def load_config(source: str) -> PretrainedConfig:
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(load_failure("a model config", source, exc)) from None
    if config.model_type not in SUPPORTED_TYPES:
        raise UserError(
            f"model.name_or_path: {source!r} holds a {config.model_type!r} model; this "
            f"pipeline fine-tunes encoders of model_type {', '.join(map(repr, SUPPORTED_TYPES))}"
        )
    return config


def _check_vocabulary(
    source: str, config: PretrainedConfig, features_tokenizer, lower: bool
) -> None:
    """The checkpoint's tokenizer must be the one the features were encoded with, and every
    token id must have a row in its embedding matrix."""
    own = load_tokenizer(source, do_lower_case=lower).get_vocab()
    if own != features_tokenizer.get_vocab():
        raise UserError(
            f"model.name_or_path: the vocabulary of {source!r} ({len(own)} tokens) is not the "
            f"one the features were encoded with ({len(features_tokenizer)} tokens); rerun "
            "featurize with this model (dvc repro)"
        )
    if len(own) > config.vocab_size:
        raise UserError(
            f"model.name_or_path: {source!r} embeds {config.vocab_size} tokens but its "
            f"vocabulary has {len(own)}; the checkpoint and its vocab.txt do not belong together"
        )


def _load_pretrained(source: str, id2label: dict, label2id: dict) -> PreTrainedModel:
    folder = Path(source)
    if folder.is_dir() and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise UserError(
            f"model.name_or_path: {source!r} holds no weights ({' or '.join(WEIGHT_FILES[::2])}); "
            "set model.init: random to train a small BERT from scratch"
        )
    try:
        with without_load_report():  # the missing keys are checked below, in one line
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(id2label),
                id2label=id2label,
                label2id=label2id,
                output_loading_info=True,
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(load_failure("the weights", source, exc)) from None
    # A checkpoint whose parameter names do not match would leave the encoder random without
    # an error: refuse that, so "pretrained" always means the encoder came from the checkpoint.
    missing = [k for k in info["missing_keys"] if not k.startswith(new_params(model.config))]
    if missing:
        raise UserError(
            f"model.name_or_path: {source!r} lacks {len(missing)} encoder weights (e.g. "
            f"{missing[0]}); it is not a {model.config.model_type} encoder checkpoint"
        )
    return model.train()  # from_pretrained returns eval mode: dropout off, unlike the recipe
