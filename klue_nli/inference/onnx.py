"""ONNX Runtime for CPU serving: the predictor's model as an ONNX graph, run by ORT.

Its probabilities are within 1e-6 of PyTorch's, and a pair gets the same answer whether it runs
alone or in a batch (no per-batch scales, unlike dynamic int8); its speed against PyTorch is in
docs/performance.md.

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
from typing import TYPE_CHECKING

import numpy as np

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json
from klue_nli.core.manifest import weights_sha256, write_manifest

if TYPE_CHECKING:  # only export needs PyTorch; a worker running a stored graph never imports it
    import torch

GRAPH_DIR = "onnx"  # inside a model folder
GRAPH_INFO = "graph.json"  # which weights and which quantization the stored graph is
# How a graph is stored; raised when that changes (2: weights beside the graph, not in it).
GRAPH_FORMAT = 2


def graph_file(quantize: str) -> str:
    return "model.onnx" if quantize == "none" else f"model-{quantize}.onnx"


def data_file(graph: str) -> str:
    """The file holding a graph's weights, beside it (ONNX external data)."""
    return f"{graph}.data"


def _with_external_data(path: Path, final: Path) -> None:
    """Write the graph at `path` as `final` plus its weights in `data_file(final.name)`.

    ORT maps weights kept beside the graph into memory instead of parsing them out of the
    protobuf, so creating a session, most of a replacement worker's start, does not parse
    the weights."""
    import onnx

    graph = onnx.load(str(path))
    onnx.save_model(
        graph,
        str(final),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_file(final.name),
        size_threshold=1024,
    )


def fuse_graph(path: Path, out: Path, config) -> dict[str, int] | None:
    """ONNX Runtime's transformer optimizer on the graph at `path`, written to `out`: attention,
    the embedding LayerNorm, skip-LayerNorm and bias-GELU each become one fused operator. The
    fused operators and their counts; None, with nothing written, where it could not fuse
    every layer's attention.

    Not the default (`export_graph(fuse=False)`): `make variants` compares it with the plain
    graph, whose matrix products take nearly all the time (docs/performance.md).

    `config`: the model's config (heads and hidden size; the optimizer cannot infer them)."""
    from onnxruntime.transformers.optimizer import optimize_model

    # Python fusions only (opt_level 0): ORT's own optimizations still run when a session
    # loads the graph, and the stored graph stays free of one machine's kernels.
    with warnings.catch_warnings(), _quiet_optimizer():
        warnings.simplefilter("ignore")
        fused = optimize_model(
            str(path),
            # its fusions cover RoBERTa and ELECTRA too (tests/unit/test_graph.py)
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
            use_gpu=False,
        )
    counts = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    if counts.get("Attention", 0) != config.num_hidden_layers:
        return None
    fused.save_model_to_file(str(out))
    return counts


class _quiet_optimizer:
    """The optimizer logs each fusion at INFO and warns of what it does not fuse."""

    def __enter__(self) -> None:
        import logging

        self.logger = logging.getLogger("onnxruntime.transformers")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        self.logger.setLevel(self.level)


def _traced(model: torch.nn.Module, inputs: tuple[str, ...], path: Path, eager: bool) -> None:
    import torch

    inner = getattr(model, "model", model)  # a MeanPooled wrapper holds the Hugging Face model
    attention = inner.config._attn_implementation
    if eager:  # the attention pattern the optimizer recognises (not SDPA's)
        inner.set_attn_implementation("eager")
    example = torch.ones(2, 8, dtype=torch.long)
    try:
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
    finally:
        inner.set_attn_implementation(attention)


def export_graph(
    model: torch.nn.Module,
    input_names: list[str],
    folder: Path,
    quantize: str = "none",
    external: bool = True,
    fuse: bool = False,
) -> tuple[Path, tuple[str, ...], dict[str, int] | None]:
    """Export `model` to `folder/graph_file(quantize)`: the graph's path, its input names and
    the operators `fuse_graph` fused (None: not fused). `external`: its weights beside it, in
    `data_file(...)` (for a graph that is stored).

    `input_names`: the tokenizer's model_input_names, so the graph takes exactly what the model
    does (no token_type_ids for the RoBERTa family)."""
    # The exporter names the graph's inputs in the order of forward()'s parameters, not of
    # the kwargs: list them in that order, or two inputs swap names (a test caught it).
    order = list(inspect.signature(model.forward).parameters)
    inputs = tuple(sorted(input_names, key=order.index))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="klue-nli-onnx-", dir=folder) as tmp:
        path = Path(tmp) / "model.onnx"
        _traced(model, inputs, path, eager=fuse)
        fused = fuse_graph(path, path.with_name("fused.onnx"), model.config) if fuse else None
        if fused is not None:
            path = path.with_name("fused.onnx")
        if quantize == "int8":  # ORT's own dynamic int8 (per-batch activation scales)
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = path.with_name("model-int8.onnx")
            quantize_dynamic(
                str(path),
                str(quantized),
                weight_type=QuantType.QInt8,
                # shape inference cannot type the outputs of the fused (contrib) operators
                extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
            )
            path = quantized
        name = graph_file(quantize)
        final = folder / name
        if not external:
            path.replace(final)  # whole or not at all
            return final, inputs, fused
        staged = Path(tmp) / "out" / name
        staged.parent.mkdir()
        _with_external_data(path, staged)
        # weights first, then the graph that names them: a graph file is whole or absent
        (staged.parent / data_file(name)).replace(folder / data_file(name))
        staged.replace(final)
    return final, inputs, fused


def store_graph(
    model: torch.nn.Module, input_names: list[str], model_dir: Path, quantize: str
) -> Path:
    """Export the folder's model (loaded as `model`) into `model_dir/onnx/`, record the weights
    it came from, and rewrite the folder's manifest so the graph is checked like the rest."""
    folder = Path(model_dir) / GRAPH_DIR
    path, inputs, _ = export_graph(model, input_names, folder, quantize)
    info = {
        "file": path.name,
        "data": data_file(path.name),
        "quantize": quantize,
        "inputs": list(inputs),
        # the manifest's figure: callers check the folder whole before they store a graph
        # (make export), and write_manifest below hashes every file again anyway
        "weights_sha256": weights_sha256(model_dir, verify=False),
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
        data = info.get("data")  # absent: weights inside the graph (stored by earlier versions)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{info_path}: unreadable ({exc}); run `make export` again") from None
    if stored_quantize != quantize:
        return None
    # the manifest's figure: the folder's files are checked against it where it is loaded
    # for serving (verify_model_dir), not hashed again for every graph it holds
    if weights != weights_sha256(model_dir, verify=False):
        raise UserError(
            f"{model_dir}: {GRAPH_DIR}/{file} was exported from other weights than "
            "model.safetensors; run `make export` again"
        )
    for name in (file, data) if data else (file,):
        if not (info_path.parent / name).is_file():
            raise UserError(f"{model_dir}: {GRAPH_DIR}/{name} is missing; run `make export` again")
    return info_path.parent / file, inputs


def exported_graph(
    model: torch.nn.Module, input_names: list[str], quantize: str
) -> tuple[Path, tuple[str, ...], tempfile.TemporaryDirectory]:
    """Export `model` now, into a private temporary folder: the graph, its input names, and
    the folder (removed when it is garbage: keep it as long as the graph is run)."""
    tmp = tempfile.TemporaryDirectory(prefix="klue-nli-onnx-")
    path, inputs, _ = export_graph(model, input_names, Path(tmp.name), quantize, external=False)
    return path, inputs, tmp


class OnnxForward:
    """`forward(batch) -> logits` on int64 arrays, computed by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        inputs: tuple[str, ...],
        threads: int,
        source: str,
    ) -> None:
        """`source`: where the graph came from ("stored" or "exported at load"), for the log."""
        import onnxruntime as ort  # only the onnxruntime runtime needs it

        self.inputs = inputs
        self.source = source
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: batch[name].astype(np.int64, copy=False) for name in self.inputs}
        return self.session.run(["logits"], feed)[0]
