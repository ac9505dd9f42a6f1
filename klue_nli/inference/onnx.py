"""ONNX Runtime for CPU serving: the predictor's model exported once at load, run by ORT.

Measured at kcbert-base's size on 2 cores (docs/performance.md): about twice the pairs/s of
PyTorch fp32 at the same batch, probabilities within 1e-6 of PyTorch's, and the same answer for
a pair whether it runs alone or in a batch (no per-batch scales, unlike dynamic int8).
The export is made from the loaded weights into a private temporary folder, so the model
folder stays the one artifact (weights, tokenizer, label map) and cannot drift from its ONNX.
"""

from __future__ import annotations

import inspect
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch


class OnnxForward:
    """`forward(batch) -> logits` like the PyTorch model's, computed by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(
        self,
        model: torch.nn.Module,
        input_names: list[str],
        threads: int,
        quantize: str = "none",
    ) -> None:
        """`input_names`: the tokenizer's model_input_names, so the graph takes exactly what
        the model does (no token_type_ids for the RoBERTa family)."""
        import onnxruntime as ort  # only the onnxruntime runtime needs it

        # The exporter names the graph's inputs in the order of forward()'s parameters, not
        # of the kwargs: list them in that order, or two inputs swap names (a test caught it).
        order = list(inspect.signature(model.forward).parameters)
        self.inputs = tuple(sorted(input_names, key=order.index))
        self._tmp = tempfile.TemporaryDirectory(prefix="klue-nli-onnx-")
        path = Path(self._tmp.name) / "model.onnx"
        example = torch.ones(2, 8, dtype=torch.long)
        with warnings.catch_warnings():  # the tracer's notes on Python control flow
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.cpu().eval(),
                (),
                str(path),
                kwargs={name: example for name in self.inputs},
                input_names=list(self.inputs),
                output_names=["logits"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "seq"} for n in self.inputs},
                    "logits": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        if quantize == "int8":  # ORT's own dynamic int8 (per-batch activation scales)
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = path.with_name("model-int8.onnx")
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].numpy().astype(np.int64, copy=False) for name in self.inputs}
        return torch.from_numpy(self.session.run(["logits"], feed)[0])
