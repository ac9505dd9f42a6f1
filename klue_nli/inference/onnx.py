"""ONNX Runtime for CPU serving: the predictor's model as an ONNX graph, run by ORT.

Measured at kcbert-base's size on 2 cores (docs/performance.md): about twice the pairs/s of
PyTorch fp32 at the same batch, probabilities within 1e-6 of PyTorch's, and the same answer for
a pair whether it runs alone or in a batch (no per-batch scales, unlike dynamic int8).

`make export` stores the graph inside the model folder it puts in the BentoML store
(`onnx/`, with the checksum of the weights it was exported from, and in the folder's
manifest), so a serving worker loads it in about a second instead of exporting it at every
start (docs/reliability.md: a crashed worker is back in seconds). A folder without a stored
graph for the served `quantize` is exported at load into a private temporary folder, as before.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json
from klue_nli.core.manifest import weights_sha256, write_manifest

GRAPH_DIR = "onnx"  # inside a model folder
GRAPH_INFO = "graph.json"  # which weights and which quantization the stored graph is


def graph_file(quantize: str) -> str:
    return "model.onnx" if quantize == "none" else f"model-{quantize}.onnx"


def export_graph(
    model: torch.nn.Module, input_names: list[str], folder: Path, quantize: str = "none"
) -> tuple[Path, tuple[str, ...]]:
    """Export `model` to `folder/graph_file(quantize)`; the graph's path and its input names.

    `input_names`: the tokenizer's model_input_names, so the graph takes exactly what the model
    does (no token_type_ids for the RoBERTa family)."""
    # The exporter names the graph's inputs in the order of forward()'s parameters, not of
    # the kwargs: list them in that order, or two inputs swap names (a test caught it).
    order = list(inspect.signature(model.forward).parameters)
    inputs = tuple(sorted(input_names, key=order.index))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="klue-nli-onnx-", dir=folder) as tmp:
        path = Path(tmp) / "model.onnx"
        example = torch.ones(2, 8, dtype=torch.long)
        with warnings.catch_warnings():  # the tracer's notes on Python control flow
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.cpu().eval(),
                (),
                str(path),
                kwargs={name: example for name in inputs},
                input_names=list(inputs),
                output_names=["logits"],
                dynamic_axes={
                    **{n: {0: "batch", 1: "seq"} for n in inputs},
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
        final = folder / graph_file(quantize)
        path.replace(final)  # whole or not at all
    return final, inputs


def store_graph(
    model: torch.nn.Module, input_names: list[str], model_dir: Path, quantize: str
) -> Path:
    """Export the folder's model (loaded as `model`) into `model_dir/onnx/`, record the weights
    it came from, and rewrite the folder's manifest so the graph is checked like the rest."""
    folder = Path(model_dir) / GRAPH_DIR
    path, inputs = export_graph(model, input_names, folder, quantize)
    info = {
        "file": path.name,
        "quantize": quantize,
        "inputs": list(inputs),
        "weights_sha256": weights_sha256(model_dir),
    }
    atomic_write_json(folder / GRAPH_INFO, info)
    write_manifest(model_dir)
    return path


def stored_graph(model_dir: Path, quantize: str) -> tuple[Path, tuple[str, ...]] | None:
    """The graph stored in `model_dir` for `quantize` and its input names; None when there is
    none for it. A graph exported from other weights than the folder's is refused."""
    info_path = Path(model_dir) / GRAPH_DIR / GRAPH_INFO
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
        file, inputs, weights = info["file"], tuple(info["inputs"]), info["weights_sha256"]
        stored_quantize = info["quantize"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{info_path}: unreadable ({exc}); run `make export` again") from None
    if stored_quantize != quantize:
        return None
    if weights != weights_sha256(model_dir):
        raise UserError(
            f"{model_dir}: {GRAPH_DIR}/{file} was exported from other weights than "
            "model.safetensors; run `make export` again"
        )
    return info_path.parent / file, inputs


class OnnxForward:
    """`forward(batch) -> logits` like the PyTorch model's, computed by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, path: Path, inputs: tuple[str, ...], threads: int, source: str) -> None:
        """`source`: where the graph came from ("stored" or "exported at load"), for the log."""
        import onnxruntime as ort  # only the onnxruntime runtime needs it

        self.inputs = inputs
        self.source = source
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def exported(
        cls, model: torch.nn.Module, input_names: list[str], threads: int, quantize: str
    ) -> OnnxForward:
        """Export `model` now, into a private temporary folder that lives as long as this."""
        tmp = tempfile.TemporaryDirectory(prefix="klue-nli-onnx-")
        path, inputs = export_graph(model, input_names, Path(tmp.name), quantize)
        forward = cls(path, inputs, threads, source="exported at load")
        forward._tmp = tmp  # removed with the forward
        return forward

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].numpy().astype(np.int64, copy=False) for name in self.inputs}
        return torch.from_numpy(self.session.run(["logits"], feed)[0])
