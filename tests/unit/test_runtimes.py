"""The runtimes `make variants` measures beside the product's (benchmarks/runtimes.py) answer
as PyTorch fp32 does on tiny checkpoints of every family they convert: CTranslate2 with the
classifier head applied in NumPy (both poolings), NNCF's int8 and its accuracy-aware int8
within the drop it was given on validation pairs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import runtimes
from klue_nli.data.features import FeatureSplit, split_file
from klue_nli.data.klue import read_split
from klue_nli.inference.onnx import export_graph
from klue_nli.inference.predictor import Predictor
from tests.unit.test_pooling import saved_model


def dev_pairs(klue_dir) -> tuple[list[str], list[str]]:
    dev = read_split(klue_dir, "dev")
    return [e.premise for e in dev], [e.hypothesis for e in dev]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta"])
def test_ctranslate2_answers_as_pytorch(family, pooling, kcbert, klue_dir, tmp_path):
    _, _, folder = saved_model(family, pooling, kcbert, tmp_path)
    reference = Predictor.from_dir(folder, device="cpu", runtime="torch")
    premises, hypotheses = dev_pairs(klue_dir)
    expected = reference.predict_proba(premises, hypotheses)
    forwards, refused = runtimes.ct2_forwards(folder, tmp_path, threads=1)
    assert "ctranslate2 fp32" in forwards and "fp32" not in refused
    assert set(forwards) | {f"ctranslate2 {t}" for t in refused} == {
        f"ctranslate2 {t}" for t in runtimes.CT2_TYPES
    }
    fp32 = Predictor(
        reference.tokenizer,
        forwards["ctranslate2 fp32"],
        reference.config,
        reference.calibration,
    )
    got = fp32.predict_proba(premises, hypotheses)
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_ctranslate2_refuses_electra_in_one_line(kcbert, tmp_path):
    _, _, folder = saved_model("electra", "mean", kcbert, tmp_path)
    assert runtimes.ct2_forwards(folder, tmp_path, threads=1) == (
        {},
        {"all": "CTranslate2 converts no electra encoder"},
    )


def features_of(reference: Predictor, klue_dir, folder) -> None:
    """train and val feature files of the sample's pairs (the tuner reads val, never dev)."""
    pairs = read_split(klue_dir, "dev")
    enc = reference.tokenizer.encode(
        [e.premise for e in pairs], [e.hypothesis for e in pairs], reference.max_length
    )
    labels = [reference.labels.index(e.label) for e in pairs]
    split = FeatureSplit.from_lists(enc["input_ids"], enc.get("token_type_ids"), labels)
    folder.mkdir()
    for name in ("train", "val"):
        split.save(split_file(folder, name))


def test_nncf_int8_and_its_accuracy_aware_int8(kcbert, klue_dir, tmp_path):
    _, _, folder = saved_model("bert", "mean", kcbert, tmp_path)
    reference = Predictor.from_dir(folder, device="cpu", runtime="torch")
    graph, inputs, _ = export_graph(
        reference.model, reference.tokenizer.model_input_names, tmp_path / "g", external=False
    )
    features_of(reference, klue_dir, tmp_path / "features")
    forwards, tuner = runtimes.nncf_forwards(
        graph, inputs, tmp_path / "features", reference.tokenizer.pad_token_id, threads=1
    )
    assert set(forwards) == {"openvino int8 (NNCF)", "openvino int8 (NNCF, accuracy-aware)"}
    assert tuner["max_drop"] == runtimes.MAX_AGREEMENT_DROP
    # the tuner stops once the drop is within its limit (or its budget is spent)
    assert tuner["validation_agreement"] >= 1 - runtimes.MAX_AGREEMENT_DROP - 1e-9
    premises, hypotheses = dev_pairs(klue_dir)
    expected = reference.predict_proba(premises, hypotheses)
    for forward in forwards.values():
        int8 = Predictor(
            reference.tokenizer,
            forward,
            reference.config,
            reference.calibration,
            runtime="openvino",
        )
        # int8 rounds the tiny model's probabilities by a little, not more
        assert np.abs(int8.predict_proba(premises, hypotheses) - expected).max() <= 0.05
