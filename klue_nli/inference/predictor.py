"""The one inference path: a predictor built from a saved model folder.

The folder holds what `save_pretrained` writes for the model (weights in safetensors, config
with the label map), the tokenizer (with max length) and the calibration train fitted
(calibration.json: the temperature every runtime's logits are divided by, and the unsure
threshold). Evaluate, the service and the tests all predict through `Predictor.predict_proba`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from klue_nli.core.cpus import cpu_has_bf16, usable_cpus
from klue_nli.core.errors import UserError
from klue_nli.core.manifest import verify_model_dir
from klue_nli.data.encoding import bucket_width, length_chunks, pad_arrays
from klue_nli.data.text import clean_pair
from klue_nli.inference.tokenizer import PairTokenizer
from klue_nli.network.calibration import Calibration, read_calibration

if TYPE_CHECKING:  # types only: a worker serving a stored graph imports neither
    import torch

# How a padded batch (int64 arrays by input name) becomes logits (float, (n, labels)).
Forward = Callable[[dict[str, np.ndarray]], np.ndarray]
# The runtimes that run the model's ONNX graph rather than the PyTorch model (CPU only).
GRAPH_RUNTIMES = ("onnxruntime", "openvino")
# The runtimes that compute bf16 natively on a CPU that has it (serve.quantize auto).
BF16_RUNTIMES = ("torch", "openvino")


def resolve_quantize(quantize: str, runtime: str) -> str:
    """serve.quantize `auto`: bf16 where the runtime and this CPU compute it natively (the
    machine that serves decides, as train.precision auto does), else none."""
    if quantize != "auto":
        return quantize
    return "bf16" if runtime in BF16_RUNTIMES and cpu_has_bf16() else "none"


def require_native(runtime: str, quantize: str) -> None:
    """A UserError when this CPU cannot run the variant natively: a model measured in bf16
    served on a CPU that only emulates it would give answers nobody measured, slowly."""
    if quantize == "bf16" and runtime in BF16_RUNTIMES and not cpu_has_bf16():
        raise UserError(
            f"the model was measured as {runtime} bf16, and this CPU computes no bf16 natively "
            "(no avx512_bf16 or amx_bf16 flag): serve it on a CPU that does, or evaluate and "
            "export it again with serve.quantize none"
        )


def graph_quantize(runtime: str, quantize: str) -> str | None:
    """The quantization of the ONNX graph `runtime` reads (what `make export` stores for it);
    None for PyTorch. ORT quantizes its own graph; OpenVINO compiles the fp32 graph at its
    precision."""
    if runtime not in GRAPH_RUNTIMES:
        return None
    return resolve_quantize(quantize, runtime) if runtime == "onnxruntime" else "none"


def graph_forward(
    runtime: str, path: Path, inputs: tuple[str, ...], threads: int, quantize: str, source: str
) -> Forward:
    """The ONNX graph at `path` run by `runtime` (one of GRAPH_RUNTIMES)."""
    if runtime == "openvino":
        from klue_nli.inference.openvino import OpenVinoForward

        return OpenVinoForward(path, inputs, threads, quantize, source)
    from klue_nli.inference.onnx import OnnxForward

    return OnnxForward(path, inputs, threads, source)


def default_device() -> str:
    """`cuda` where PyTorch finds a GPU, else `cpu`. Asking PyTorch costs its import; a
    machine without NVIDIA's driver has no CUDA for it to find, so it is not asked there."""
    driver = any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))
    if "torch" not in sys.modules and not driver:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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


def torch_forward(model: torch.nn.Module, device: str) -> Forward:
    """The PyTorch model as a `Forward`."""
    import torch

    def forward(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return model(**tensors).logits.float().cpu().numpy()

    return forward


def read_config(model_dir: Path) -> dict:
    """The model folder's config.json (labels, position limit), or one line saying why not."""
    try:
        return json.loads((model_dir / "config.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{model_dir}: not a saved model folder (no config.json)") from None
    except ValueError as exc:
        raise UserError(f"{model_dir}/config.json: unreadable ({exc})") from None


def quantized(model: torch.nn.Module, quantize: str) -> torch.nn.Module:
    """The PyTorch model for a CPU's `quantize`: int8 Linear layers (dynamic), or bf16
    weights (oneDNN's bf16 kernels: AVX512-BF16, AMX), or as it is."""
    import torch

    if quantize == "int8":
        return torch.ao.quantization.quantize_dynamic(
            model.eval(), {torch.nn.Linear}, dtype=torch.qint8
        )
    return model.to(torch.bfloat16) if quantize == "bf16" else model


class Predictor:
    def __init__(
        self,
        tokenizer: PairTokenizer,
        forward: Forward,
        config: dict,
        calibration: Calibration,
        model: torch.nn.Module | None = None,
        device: str = "cpu",
        runtime: str = "torch",
        graph_source: str | None = None,
    ):
        """`config`: the model folder's config.json (labels, position limit). `calibration`:
        its calibration.json (temperature, unsure threshold). `model`: the
        PyTorch model `forward` runs, or None when another runtime (ONNX Runtime) holds its
        own copy of the weights (a serving worker then holds the model once)."""
        self.tokenizer = tokenizer
        self._forward = forward
        self.model = model
        self.device = device
        self.runtime = runtime
        self.quantize = "none"  # what from_dir resolved serve.quantize to
        # where the ONNX graph came from ("stored" by `make export`, or "exported at load")
        self.graph_source = graph_source
        self.config = config
        self.calibration = calibration
        id2label = {int(k): v for k, v in config["id2label"].items()}
        self.labels: tuple[str, ...] = tuple(id2label[i] for i in range(len(id2label)))
        # A tokenizer saved without a cap reports a huge model_max_length; the model's own
        # position limit is then the cap.
        self.max_length = min(tokenizer.model_max_length, int(config["max_position_embeddings"]))
        # Tokens fed to the model so far, real and with padding (the service's metrics).
        self.tokens_real = 0
        self.tokens_padded = 0
        # Most padding a model call may carry before its pairs are split by length (the
        # choice of 0.1: docs/performance.md); 1.0 turns the split off.
        self.max_padding = 0.1
        # Widths per power of two a model call is padded to (bucket_width; 0: each call's
        # own longest pair). OpenVINO compiles and keeps kernels for every input shape it
        # meets: on random serving batches with exact widths a worker met hundreds of shapes,
        # compiling each while its requests waited, and kept about 1 GB more (`make shapes`,
        # benchmarks/shapes.json). Buckets of at most 1/8 padding keep a few dozen widths;
        # other runtimes keep the exact width.
        self.width_steps = 8 if runtime == "openvino" else 0

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        device: str | None = None,
        require_manifest: bool = False,
        quantize: str = "none",
        runtime: str = "torch",
        threads: int | None = None,
        checked: str | None = None,
    ) -> Predictor:
        """The model folder's predictor.

        On CPU only (a GPU always runs PyTorch, where bf16/fp32 beat CPU kernels):
        `runtime="onnxruntime"` runs the model with ONNX Runtime (klue_nli/inference/onnx.py),
        `runtime="openvino"` with OpenVINO (klue_nli/inference/openvino.py): the graph `make
        export` stored in the folder when there is one (then neither the weights nor PyTorch
        are loaded), else one exported now.
        `quantize="int8"` quantizes the Linear layers dynamically to int8 (PyTorch's, or
        ORT's own under onnxruntime); `quantize="bf16"` runs PyTorch's model in bfloat16 or
        has OpenVINO compute in bf16; `quantize="auto"` is bf16 where the runtime and this CPU
        compute it natively, else none (resolve_quantize; `self.quantize` says which).
        Evaluate measures how often the served configuration agrees with PyTorch fp32
        (`served` in metrics/eval.json). `threads`: CPU threads (default: every usable CPU).
        `checked`: see verify_model_dir."""
        model_dir = Path(model_dir)
        config = read_config(model_dir)
        verify_model_dir(model_dir, require_manifest, checked)
        tokenizer = PairTokenizer.from_dir(model_dir)
        model_files = (tokenizer, config, read_calibration(model_dir))
        device = device or default_device()
        cpu = device.split(":")[0] == "cpu"
        quantize = resolve_quantize(quantize, runtime) if cpu else "none"
        given_threads, threads = threads, threads or usable_cpus()
        stored_quantize = graph_quantize(runtime, quantize)
        graph = cpu and stored_quantize is not None
        if graph:
            from klue_nli.inference.onnx import stored_graph

            stored = stored_graph(model_dir, stored_quantize)
            if stored is not None:  # `make export` stored it: the weights need not be loaded
                forward = graph_forward(runtime, *stored, threads, quantize, "stored")
                return cls._made(*model_files, forward, None, device, quantize)
        import torch

        if given_threads is not None and cpu:
            torch.set_num_threads(given_threads)
        model = load_model(model_dir)
        if graph:
            from klue_nli.inference.onnx import exported_graph

            path, inputs, tmp = exported_graph(model, tokenizer.model_input_names, stored_quantize)
            forward = graph_forward(runtime, path, inputs, threads, quantize, "exported at load")
            forward._tmp = tmp  # the graph's folder lives as long as the forward
            return cls._made(*model_files, forward, None, device, quantize)
        model = quantized(model, quantize if cpu else "none").to(device).eval()
        return cls._made(*model_files, torch_forward(model, device), model, device, quantize)

    @classmethod
    def _made(cls, tokenizer, config, calibration, forward, model, device, quantize) -> Predictor:
        """A predictor whose `forward` is a graph runtime's (model None) or PyTorch's."""
        if model is None:
            made = cls(
                tokenizer, forward, config, calibration, None, device, forward.name, forward.source
            )
        else:
            made = cls(tokenizer, forward, config, calibration, model, device)
        made.quantize = quantize
        return made

    def logits_truncated(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's raw logits, shape (n, len(self.labels)) in the model's label order, and
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
            enc = self.tokenizer.encode(ps, hs, self.max_length)
            cut = self.tokenizer.truncated(ps, hs, enc["input_ids"], self.max_length)
            truncated[start : start + len(chunk)] = cut
            ids, types = enc["input_ids"], enc.get("token_type_ids")
            # similar lengths share a model call: less padding (answers do not change)
            for rows in length_chunks([len(x) for x in ids], batch_size, self.max_padding):
                longest = max(len(ids[i]) for i in rows)
                batch = pad_arrays(
                    [ids[i] for i in rows],
                    None if types is None else [types[i] for i in rows],
                    pad_id,
                    min(bucket_width(longest, self.width_steps), self.max_length),
                )
                self.tokens_real += sum(len(ids[i]) for i in rows)
                self.tokens_padded += batch["input_ids"].size
                out[[start + i for i in rows]] = self._forward(batch)
        return out, truncated

    def predict_proba_truncated(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated class probabilities (the logits over the fitted temperature), shape
        (n, len(self.labels)), and which pairs were cut to the maximum length (bool, n)."""
        logits, truncated = self.logits_truncated(premises, hypotheses, batch_size)
        return self.calibration.probabilities(logits), truncated

    def predict_proba(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """Class probabilities, shape (n, len(self.labels)), in the model's label order."""
        return self.predict_proba_truncated(premises, hypotheses, batch_size)[0]

    def unsure(self, probabilities: np.ndarray) -> np.ndarray:
        """Which rows of calibrated probabilities are below the model's unsure threshold."""
        return self.calibration.unsure(probabilities)

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[str]:
        probs = self.predict_proba(premises, hypotheses)
        return [self.labels[i] for i in probs.argmax(axis=1)]
