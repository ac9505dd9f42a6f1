"""serve.runtime openvino (klue_nli/inference/openvino.py): the ONNX graph `make export` stores,
compiled by OpenVINO, with PyTorch fp32's answers in fp32 and within bf16's rounding in bf16,
for every encoder family; `auto` is bf16 only where the runtime and the CPU compute it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import klue_nli.inference.predictor as predictor_module
from klue_nli.core.errors import ParamsError
from klue_nli.core.manifest import write_manifest
from klue_nli.core.params import params_from_dict
from klue_nli.data.encoding import bucket_width
from klue_nli.data.klue import read_split
from klue_nli.inference.onnx import GRAPH_DIR
from klue_nli.inference.predictor import Predictor, graph_quantize, resolve_quantize
from tests.conftest import defaults
from tests.helpers import deep_update
from tests.unit.test_graph import HYPOTHESES, PREMISES, exported_folder


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra"])
def test_openvino_answers_as_pytorch_on_the_dev_file(family, kcbert, klue_dir, tmp_path):
    folder = exported_folder(family, kcbert, tmp_path)
    dev = read_split(klue_dir, "dev")
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    reference = Predictor.from_dir(folder, device="cpu", runtime="torch")
    expected = reference.predict_proba(premises, hypotheses)

    fp32 = Predictor.from_dir(folder, device="cpu", runtime="openvino", quantize="none")
    assert (fp32.runtime, fp32.quantize, fp32.graph_source) == ("openvino", "none", "stored")
    assert fp32.model is None  # the stored graph: no weights loaded
    got = fp32.predict_proba(premises, hypotheses)
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()

    bf16 = Predictor.from_dir(folder, device="cpu", runtime="openvino", quantize="bf16")
    assert bf16.quantize == "bf16"
    # bf16 keeps 8 bits of mantissa: probabilities move by rounding, not by more
    assert np.abs(bf16.predict_proba(premises, hypotheses) - expected).max() <= 0.02


def test_openvino_meets_bucketed_widths(kcbert, klue_dir, tmp_path):
    """OpenVINO keeps compiled kernels per input shape: its model calls see widths rounded up
    to their bucket (bucket_width, or the model's length limit), the padding masked (the
    answers: the test above); other runtimes see each call's own longest pair."""
    folder = exported_folder("bert", kcbert, tmp_path)
    dev = read_split(klue_dir, "dev")
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    widths: dict[str, set[int]] = {}
    for runtime in ("openvino", "onnxruntime"):
        predictor = Predictor.from_dir(folder, device="cpu", runtime=runtime, quantize="none")
        seen = widths.setdefault(runtime, set())
        forward = predictor._forward

        def recorded(batch, forward=forward, seen=seen):
            seen.add(batch["input_ids"].shape[1])
            return forward(batch)

        predictor._forward = recorded
        predictor.predict_proba(premises, hypotheses, 8)
    buckets = {bucket_width(w, 8) for w in range(1, 513)}
    assert widths["openvino"] <= buckets | {predictor.max_length}
    assert widths["onnxruntime"] - buckets  # exact widths, some between the buckets


def test_a_folder_without_a_graph_is_exported_at_load_for_openvino(kcbert, tmp_path):
    folder = exported_folder("bert", kcbert, tmp_path)
    plain = tmp_path / "without-graph"
    shutil.copytree(folder, plain)
    shutil.rmtree(plain / GRAPH_DIR)
    write_manifest(plain)
    fresh = Predictor.from_dir(plain, device="cpu", runtime="openvino", quantize="none")
    assert fresh.graph_source == "exported at load"
    stored = Predictor.from_dir(folder, device="cpu", runtime="openvino", quantize="none")
    a, b = (p.predict_proba(PREMISES, HYPOTHESES) for p in (fresh, stored))
    assert np.abs(a - b).max() < 1e-6


def test_auto_is_bf16_only_where_the_runtime_and_the_cpu_compute_it(monkeypatch):
    monkeypatch.setattr(predictor_module, "cpu_has_bf16", lambda: True)
    assert resolve_quantize("auto", "openvino") == "bf16"
    assert resolve_quantize("auto", "torch") == "bf16"
    assert resolve_quantize("auto", "onnxruntime") == "none"  # ORT has no CPU bf16 kernels
    assert resolve_quantize("int8", "onnxruntime") == "int8"  # a stated value is kept
    # OpenVINO compiles the fp32 graph at its precision; ORT reads the graph of its own
    assert graph_quantize("openvino", "auto") == "none"
    assert graph_quantize("onnxruntime", "int8") == "int8"
    assert graph_quantize("torch", "auto") is None
    monkeypatch.setattr(predictor_module, "cpu_has_bf16", lambda: False)
    assert resolve_quantize("auto", "openvino") == "none"


@pytest.mark.parametrize(
    ("serve", "message"),
    [
        ({"runtime": "onnxruntime", "quantize": "bf16"}, "quantize bf16 runs on openvino or torch"),
        ({"runtime": "openvino", "quantize": "int8"}, "quantize int8 runs on onnxruntime or torch"),
    ],
)
def test_a_quantization_the_runtime_cannot_run_is_refused(serve, message):
    with pytest.raises(ParamsError, match=f"serve.runtime: .*{message}"):
        params_from_dict(deep_update(defaults(), {"serve": serve}))
