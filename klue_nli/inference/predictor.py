"""The one inference path: a predictor built from a saved model folder.

The folder holds what `save_pretrained` writes for the model (weights in safetensors, config
with the label map) and the tokenizer (with max length). Evaluate, the service and the tests
all predict through `Predictor.predict_proba`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import verify_model_dir
from klue_nli.data.encoding import (
    encode_pairs,
    length_chunks,
    load_tokenizer,
    pad_batch,
    truncated_mask,
)
from klue_nli.data.text import clean_pair

if TYPE_CHECKING:
    from transformers import PretrainedConfig


def load_model(model_dir: Path) -> torch.nn.Module:
    """The folder's PyTorch model, run with the pooling it was trained with."""
    # here, not at import: a worker serving a stored ONNX graph never loads transformers' models
    from transformers import AutoModelForSequenceClassification

    from klue_nli.network.pooling import with_pooling

    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
        return with_pooling(model)  # as it was trained: its config says which
    except Exception as exc:  # safetensors and transformers raise many kinds; all mean this
        raise UserError(f"{model_dir}: cannot load the model ({exc})") from None


class Predictor:
    def __init__(
        self,
        model: torch.nn.Module | None,
        tokenizer,
        device: str | torch.device = "cpu",
        forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
        config: PretrainedConfig | None = None,
    ):
        """`model` may be None when `forward` runs a graph stored with the folder; `config`
        (the model's, by default) then says the labels and the position limit."""
        # Another runtime (ONNX Runtime) holds its own copy of the weights: the PyTorch model is
        # then not kept, so a serving worker holds the model once.
        self.model = model.to(device).eval() if forward is None else None
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        # How a padded batch becomes logits: the PyTorch model, unless another runtime is given.
        self._forward = forward or (lambda batch: self.model(**batch).logits)
        self.runtime: str = getattr(forward, "name", "torch")
        # where the ONNX graph came from ("stored" by `make export`, or "exported at load")
        self.graph_source: str | None = getattr(forward, "source", None)
        self.config = config = config or model.config
        self.labels: tuple[str, ...] = tuple(config.id2label[i] for i in range(config.num_labels))
        # A tokenizer saved without a cap reports a huge model_max_length; the model's own
        # position limit is then the cap.
        self.max_length = min(int(tokenizer.model_max_length), config.max_position_embeddings)
        # Tokens fed to the model so far, real and with padding (the service's metrics).
        self.tokens_real = 0
        self.tokens_padded = 0
        # Most padding a model call may carry before its pairs are split by length (0.1:
        # measured, docs/performance.md); 1.0 turns the split off.
        self.max_padding = 0.1

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        device: str | None = None,
        require_manifest: bool = False,
        quantize: str = "none",
        runtime: str = "torch",
    ) -> Predictor:
        """The model folder's predictor.

        On CPU only (a GPU always runs PyTorch, where bf16/fp32 beat CPU kernels):
        `runtime="onnxruntime"` runs the model with ONNX Runtime (klue_nli/inference/onnx.py):
        the graph `make export` stored in the folder for `quantize` when there is one (the
        weights are then not loaded), else one exported now. `quantize="int8"` quantizes the
        Linear layers dynamically to int8 (PyTorch's, or ORT's own under onnxruntime).
        Evaluate measures how often the served configuration agrees with PyTorch fp32
        (`served` in metrics/eval.json)."""
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(f"{model_dir}: not a saved model folder (no config.json)")
        verify_model_dir(model_dir, require_manifest)
        tokenizer = load_tokenizer(str(model_dir))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        onnx = torch.device(device).type == "cpu" and runtime == "onnxruntime"
        if onnx:
            from klue_nli.inference.onnx import OnnxForward, stored_graph

            stored = stored_graph(model_dir, quantize)
            if stored is not None:  # `make export` stored it: the weights need not be loaded
                from transformers import AutoConfig

                forward = OnnxForward(*stored, torch.get_num_threads(), source="stored")
                config = AutoConfig.from_pretrained(model_dir)
                return cls(None, tokenizer, device, forward, config=config)
        model = load_model(model_dir)
        forward = None
        if onnx:
            forward = OnnxForward.exported(
                model, tokenizer.model_input_names, torch.get_num_threads(), quantize
            )
        elif torch.device(device).type == "cpu" and quantize == "int8":
            model = torch.ao.quantization.quantize_dynamic(
                model.eval(), {torch.nn.Linear}, dtype=torch.qint8
            )
        return cls(model, tokenizer, device, forward)

    @torch.inference_mode()
    def predict_proba_truncated(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities, shape (n, len(self.labels)) in the model's label order, and
        which pairs were cut to the model's maximum length (bool, n).

        Every pair goes through the one text rule first (NFC; InvalidText for empty,
        whitespace-only or control-character text), as in featurize and the service."""
        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        pairs = [clean_pair(p, h) for p, h in zip(premises, hypotheses, strict=True)]
        out = np.empty((len(pairs), len(self.labels)), dtype=np.float32)
        truncated = np.zeros(len(pairs), dtype=bool)
        pad_id = self.tokenizer.pad_token_id
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            ps, hs = [p for p, _ in chunk], [h for _, h in chunk]
            enc = encode_pairs(self.tokenizer, ps, hs, self.max_length)
            cut = truncated_mask(self.tokenizer, ps, hs, enc["input_ids"], self.max_length)
            truncated[start : start + len(chunk)] = cut
            ids, types = enc["input_ids"], enc.get("token_type_ids")
            # similar lengths share a model call: less padding (answers do not change)
            for rows in length_chunks([len(x) for x in ids], batch_size, self.max_padding):
                batch = pad_batch(
                    [ids[i] for i in rows],
                    None if types is None else [types[i] for i in rows],
                    pad_id,
                )
                self.tokens_real += sum(len(ids[i]) for i in rows)
                self.tokens_padded += batch["input_ids"].numel()
                batch = {k: v.to(self.device) for k, v in batch.items()}
                logits = self._forward(batch).float()
                out[[start + i for i in rows]] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out, truncated

    def predict_proba(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """Class probabilities, shape (n, len(self.labels)), in the model's label order."""
        return self.predict_proba_truncated(premises, hypotheses, batch_size)[0]

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[str]:
        probs = self.predict_proba(premises, hypotheses)
        return [self.labels[i] for i in probs.argmax(axis=1)]
