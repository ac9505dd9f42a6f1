"""The plain model: a BERT sequence-pair classifier, pretrained or randomly initialised."""

from __future__ import annotations

from transformers import AutoConfig, BertForSequenceClassification

from klue_nli.errors import UserError
from klue_nli.params import ModelParams


def build_model(
    model_params: ModelParams, labels: tuple[str, ...], vocab_size: int
) -> BertForSequenceClassification:
    """kcbert-base with a fresh 3-way head, or (init: random) a small BERT of the same family.

    The label map goes into the config, so `save_pretrained` carries it to evaluate and serving.
    """
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    source = model_params.name_or_path
    try:
        if model_params.init == "pretrained":
            return BertForSequenceClassification.from_pretrained(
                source, num_labels=len(labels), id2label=id2label, label2id=label2id
            )
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        hint = " (no weights there? set model.init: random for a small untrained BERT)"
        raise UserError(f"cannot load model {source!r}: {exc}{hint}") from None
    size = model_params.random
    config.update(
        {
            "num_hidden_layers": size.num_hidden_layers,
            "hidden_size": size.hidden_size,
            "num_attention_heads": size.num_attention_heads,
            "intermediate_size": size.intermediate_size,
            "vocab_size": vocab_size,
            "num_labels": len(labels),
            "id2label": id2label,
            "label2id": label2id,
            "architectures": ["BertForSequenceClassification"],
        }
    )
    return BertForSequenceClassification(config)
