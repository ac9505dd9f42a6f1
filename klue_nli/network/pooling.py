"""What the classifier head reads: `model.pooling`, recorded in the model's config.json as
`classifier_pooling`, so a saved folder is run the way it was trained.

- `cls`: the checkpoint's own head on the [CLS] token (BERT's pooler, RoBERTa's and
  ELECTRA's classification heads), the Hugging Face model as it is.
- `mean`: the same head on the masked mean of the last hidden state, the pooling
  multilingual-e5 was pretrained with (its [CLS] pooler never was).

Training, the Predictor (PyTorch) and the ONNX export all run `with_pooling(model)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # types only: a serving worker does not import transformers' models
    from transformers import PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("cls", "mean")
CONFIG_KEY = "classifier_pooling"


def pooling_of(model: PreTrainedModel) -> str:
    """The pooling a model was built or saved with (`cls` for one that names none)."""
    return getattr(model.config, CONFIG_KEY, None) or "cls"


class MeanPooled(torch.nn.Module):
    """A sequence classifier whose head reads the masked mean of the tokens' last hidden
    states. Takes and returns what the wrapped model does (`.logits`); saves as it does."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    # Parameters in the wrapped model's order: the ONNX export names its inputs by it.
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        encoder = getattr(self.model, self.model.base_model_prefix)
        hidden = encoder(**inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.config.model_type == "bert":  # BERT: dropout, then the linear classifier
            logits = self.model.classifier(self.model.dropout(mean))
        else:  # RoBERTa's and ELECTRA's heads read position 0 of a sequence
            logits = self.model.classifier(mean.unsqueeze(1))
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=logits)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    def save_pretrained(self, folder, **kwargs) -> None:
        self.model.save_pretrained(folder, **kwargs)


def with_pooling(model: PreTrainedModel, pooling: str | None = None) -> torch.nn.Module:
    """`model` run with `pooling` (recorded in its config), or with the pooling its config
    records when None."""
    if pooling is not None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} (one of {', '.join(POOLINGS)})")
        setattr(model.config, CONFIG_KEY, pooling)
    return MeanPooled(model) if pooling_of(model) == "mean" else model
