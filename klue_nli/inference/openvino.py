"""OpenVINO for CPU serving: the same ONNX graph ONNX Runtime runs (klue_nli/inference/onnx.py,
stored by `make export` or exported at load), compiled by OpenVINO's CPU plugin, in fp32 or in
bf16 on a CPU that computes bf16 natively (AVX512-BF16, AMX).

Why it is there: bf16 halves the bytes each matrix product reads and doubles the lanes of
each multiply-add, and OpenVINO's kernels do so for a whole ONNX graph (PyTorch's bf16 is slow
at batch 1). `make variants` measures it beside ONNX Runtime and the other runtimes, with its
agreement with PyTorch fp32 (benchmarks/variants.json).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

# serve.quantize -> OpenVINO's inference precision
PRECISIONS = {"none": "f32", "bf16": "bf16"}


class OpenVinoForward:
    """`forward(batch) -> logits` on int64 arrays, computed by OpenVINO's CPU plugin."""

    name = "openvino"

    def __init__(
        self, path: Path | object, inputs: tuple[str, ...], threads: int, quantize: str, source: str
    ) -> None:
        """`path`: an ONNX graph (its weights beside it), or an `openvino.Model` in memory (a
        quantized one: its int8 layers stay int8, the rest run at `quantize`'s precision).
        `quantize`: none (fp32) or bf16. `source`: where the graph came from ("stored" or
        "exported at load"), for the log."""
        import openvino as ov  # only the openvino runtime needs it

        if quantize not in PRECISIONS:
            raise ValueError(f"openvino runs none or bf16, not {quantize!r}")
        self.inputs = inputs
        self.source = source
        self.quantize = quantize
        compiled = ov.Core().compile_model(
            str(path) if isinstance(path, str | Path) else path,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": PRECISIONS[quantize],
                # one request at a time, each on every thread: the batcher makes the batches
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
            },
        )
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one inference at a time

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: batch[name].astype(np.int64, copy=False) for name in self.inputs}
        with self._lock:
            # the result is a view of the request's own buffer: copied before the next call
            return np.array(self._request.infer(feed)[0], dtype=np.float32)
