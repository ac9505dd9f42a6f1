"""train.freeze_layers: the embeddings and the lowest encoder layers keep their weights, so
backward stops above them; a count that leaves nothing to train is one line naming the key."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from klue_nli.core.errors import ParamsError
from klue_nli.model.module import freeze_lowest


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


def test_the_lowest_layers_and_embeddings_get_no_gradient():
    model = tiny_bert()
    freeze_lowest(model, 2)
    ids = torch.randint(0, 50, (3, 7))
    model(input_ids=ids, labels=torch.tensor([0, 1, 2])).loss.backward()
    for name, param in model.named_parameters():
        frozen = "embeddings" in name or ".layer.0." in name or ".layer.1." in name
        assert param.requires_grad is not frozen, name
        assert (param.grad is None) is frozen, name


def test_freezing_every_layer_is_refused_naming_the_key():
    with pytest.raises(ParamsError, match=r"^train.freeze_layers: 4 leaves no encoder layer"):
        freeze_lowest(tiny_bert(), 4)
