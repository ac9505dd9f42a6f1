"""The ONNX graph `make export` stores with the model (klue_nli/inference/onnx.py): a worker
runs it without loading the weights or exporting, with the answers of the graph exported at
load; a graph from other weights is refused, one for another quantization is not used."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import MANIFEST_FILE, verify_model_dir, write_manifest
from klue_nli.inference.onnx import GRAPH_DIR, GRAPH_INFO, store_graph
from klue_nli.inference.predictor import Predictor
from tests.test_pooling import LONG, SHORT, saved_model

PREMISES, HYPOTHESES = [SHORT[0], LONG[0]], [SHORT[1], LONG[1]]


def exported_folder(family: str, kcbert: str, tmp_path):
    _, _, folder = saved_model(family, "mean", kcbert, tmp_path)
    write_manifest(folder)
    loaded = Predictor.from_dir(folder, device="cpu", runtime="torch")
    store_graph(loaded.model, loaded.tokenizer.model_input_names, folder, "none")
    return folder


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_a_stored_graph_answers_as_the_one_exported_at_load(family, kcbert, tmp_path):
    folder = exported_folder(family, kcbert, tmp_path)
    # the graph is in the manifest: checked like the weights
    assert f"{GRAPH_DIR}/model.onnx" in json.loads((folder / MANIFEST_FILE).read_text())
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
