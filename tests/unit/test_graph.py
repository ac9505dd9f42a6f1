"""The ONNX graph `make export` stores with the model (klue_nli/inference/onnx.py): a worker
runs it without loading the weights or exporting, with the answers of the graph exported at
load; a graph from other weights is refused, one for another quantization is not used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import MANIFEST_FILE, verify_model_dir, write_manifest
from klue_nli.data.klue import read_split
from klue_nli.inference.onnx import GRAPH_DIR, GRAPH_INFO, OnnxForward, export_graph, store_graph
from klue_nli.inference.predictor import Predictor
from tests.unit.test_pooling import LONG, SHORT, saved_model

PREMISES, HYPOTHESES = [SHORT[0], LONG[0]], [SHORT[1], LONG[1]]


def exported_folder(family: str, kcbert: str, tmp_path):
    _, _, folder = saved_model(family, "mean", kcbert, tmp_path)
    write_manifest(folder)
    loaded = Predictor.from_dir(folder, device="cpu", runtime="torch")
    store_graph(loaded.model, loaded.tokenizer.model_input_names, folder, "none")
    return folder


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra"])
def test_a_stored_graph_answers_as_the_one_exported_at_load(family, kcbert, tmp_path):
    folder = exported_folder(family, kcbert, tmp_path)
    # the graph and its weights (beside it) are in the manifest: checked like the rest
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert {f"{GRAPH_DIR}/model.onnx", f"{GRAPH_DIR}/model.onnx.data"} <= manifest.keys()
    verify_model_dir(folder, require_manifest=True)

    stored = Predictor.from_dir(folder, device="cpu", runtime="onnxruntime")
    assert stored.graph_source == "stored" and stored.model is None  # no weights loaded
    plain = tmp_path / "without-graph"  # the same model folder, as train wrote it
    shutil.copytree(folder, plain)
    shutil.rmtree(plain / GRAPH_DIR)
    write_manifest(plain)
    fresh = Predictor.from_dir(plain, device="cpu", runtime="onnxruntime")
    assert fresh.graph_source == "exported at load"
    torch_run = Predictor.from_dir(folder, device="cpu", runtime="torch")
    a, b = (p.predict_proba(PREMISES, HYPOTHESES) for p in (stored, fresh))
    assert np.abs(a - b).max() < 1e-6
    assert np.abs(a - torch_run.predict_proba(PREMISES, HYPOTHESES)).max() < 1e-5
    assert stored.labels == torch_run.labels and stored.max_length == torch_run.max_length


def test_a_graph_from_other_weights_is_refused_and_another_quantization_not_used(kcbert, tmp_path):
    folder = exported_folder("bert", kcbert, tmp_path)
    # another quantization than the stored one: exported at load, as before
    int8 = Predictor.from_dir(folder, device="cpu", runtime="onnxruntime", quantize="int8")
    assert int8.graph_source == "exported at load"

    info = folder / GRAPH_DIR / GRAPH_INFO
    record = json.loads(info.read_text())
    info.write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    write_manifest(folder)  # a consistent folder whose graph names other weights
    with pytest.raises(UserError, match="exported from other weights"):
        Predictor.from_dir(folder, device="cpu", runtime="onnxruntime")
    # a damaged graph file is caught by the manifest before it is run
    info.write_text(json.dumps(record))
    write_manifest(folder)
    with (folder / GRAPH_DIR / "model.onnx").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\0\0\0\0")
    with pytest.raises(UserError, match=r"model\.onnx is corrupt"):
        Predictor.from_dir(folder, device="cpu", runtime="onnxruntime", require_manifest=True)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_stored_graph_is_served_without_pytorch_or_transformers(runtime, kcbert, tmp_path):
    """What makes a replacement worker quick (docs/reliability.md): the stored graph, the
    folder's tokenizer.json and config.json, and nothing of PyTorch (1.5 s to import) or
    transformers (0.7 s)."""
    folder = exported_folder("bert", kcbert, tmp_path)
    code = (
        "import sys; from klue_nli.inference.predictor import Predictor; "
        f"p = Predictor.from_dir({str(folder)!r}, runtime={runtime!r}, quantize='none', "
        "threads=1); "
        f"print(p.predict({PREMISES!r}, {HYPOTHESES!r})); "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    answers, imported = run.stdout.strip().splitlines()[-2:]
    assert answers == str(Predictor.from_dir(folder, device="cpu").predict(PREMISES, HYPOTHESES))
    assert imported == "[]"


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra"])
def test_the_fused_graph_answers_as_pytorch_on_the_dev_file(family, kcbert, klue_dir, tmp_path):
    """ONNX Runtime's optimizer (what `make variants` measures against the plain graph) fuses
    every layer's attention of each family, with PyTorch fp32's answers: the same argmax on
    every dev pair, probabilities within 1e-4."""
    _, _, folder = saved_model(family, "mean", kcbert, tmp_path)
    pytorch = Predictor.from_dir(folder, device="cpu", runtime="torch")
    names = pytorch.tokenizer.model_input_names
    path, inputs, fused = export_graph(pytorch.model, names, tmp_path / "g", fuse=True)
    layers = pytorch.config["num_hidden_layers"]
    assert fused["Attention"] == layers and fused["SkipLayerNormalization"] == 2 * layers, fused
    forward = OnnxForward(path, inputs, 1, source="exported at load")
    served = Predictor(
        pytorch.tokenizer, forward, pytorch.config, pytorch.calibration, runtime="onnxruntime"
    )
    dev = read_split(klue_dir, "dev")
    premises, hypotheses = [e.premise for e in dev], [e.hypothesis for e in dev]
    a = served.predict_proba(premises, hypotheses)
    b = pytorch.predict_proba(premises, hypotheses)
    assert np.abs(a - b).max() <= 1e-4
    assert (a.argmax(1) == b.argmax(1)).all()


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_the_ffn_output_projections_are_found_in_each_family_s_graph(family, kcbert, tmp_path):
    """`make bench`'s selective int8 keeps these in fp32: one per layer, none other."""
    from benchmarks.variants import ffn_outputs

    _, _, folder = saved_model(family, "mean", kcbert, tmp_path)
    pytorch = Predictor.from_dir(folder, device="cpu", runtime="torch")
    path, _, _ = export_graph(pytorch.model, pytorch.tokenizer.model_input_names, tmp_path / "g")
    found = ffn_outputs(path)
    assert len(found) == pytorch.config["num_hidden_layers"], found
    assert all("attention" not in name for name in found)
