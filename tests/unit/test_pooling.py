"""model.pooling: the head reads [CLS] (cls) or the masked mean of the last hidden state
(mean), recorded in the saved config and run alike by training, the Predictor (PyTorch) and
the ONNX graph, for every encoder family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from klue_nli.data.encoding import load_tokenizer
from klue_nli.inference.predictor import Predictor
from klue_nli.model.modeling import build_model
from klue_nli.network.pooling import MeanPooled
from tests.conftest import default_params
from tests.helpers import write_calibration
from tests.stage.test_families import tiny_checkpoint

LABELS = ("entailment", "contradiction", "neutral")
SHORT = ("고양이가 잔다.", "동물이 자고 있다.")
LONG = (
    "오늘 아침 서울에는 비가 많이 내렸고 오후에는 바람이 강하게 불어 사람들이 모두 우산을 챙겼다.",
    "날씨가 맑아서 누구도 우산을 쓰지 않았다.",
)


def saved_model(family: str, pooling: str, kcbert: str, tmp_path) -> tuple:
    types = 1 if family in ("roberta", "xlm-roberta") else 2
    checkpoint = tiny_checkpoint(family, kcbert, types, tmp_path / f"{family}-ckpt")
    tokenizer = load_tokenizer(str(checkpoint))
    if types == 1:  # one segment embedding: no segment ids, as featurize saves it
        inputs = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
        tokenizer = load_tokenizer(str(checkpoint), model_input_names=inputs)
    torch.manual_seed(0)
    model = build_model(
        default_params(model={"name_or_path": str(checkpoint), "pooling": pooling}).model,
        LABELS,
        tokenizer,
    ).eval()
    folder = tmp_path / f"{family}-{pooling}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_calibration(folder)
    return model, tokenizer, folder


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra"])
def test_mean_pooling_travels_with_the_model_and_ignores_padding(family, kcbert, tmp_path):
    model, tokenizer, folder = saved_model(family, "mean", kcbert, tmp_path)
    assert isinstance(model, MeanPooled)
    assert json.loads((folder / "config.json").read_text())["classifier_pooling"] == "mean"

    # the folder is run as it was built: the in-memory model's answer for a pair
    enc = tokenizer(*SHORT, return_tensors="pt")
    with torch.inference_mode():
        expected = torch.softmax(model(**enc).logits, -1).numpy()[0]
    runs = {
        runtime: Predictor.from_dir(folder, device="cpu", runtime=runtime)
        for runtime in ("torch", "onnxruntime")
    }
    for predictor in runs.values():
        predictor.max_padding = 1.0  # one model call for both pairs: the short one is padded
        alone = predictor.predict_proba([SHORT[0]], [SHORT[1]])[0]
        padded = predictor.predict_proba([SHORT[0], LONG[0]], [SHORT[1], LONG[1]])[0]
        assert np.abs(alone - expected).max() < 1e-5, predictor.runtime
        # the padding of a batch is outside the mean: the same answer alone or batched
        assert np.abs(padded - alone).max() < 1e-5, predictor.runtime


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_cls_and_mean_pooling_read_different_things(family, kcbert, tmp_path):
    """The same weights answer differently with each pooling (the setting is not ignored),
    and cls is the family's own head, as before."""
    _, _, mean_dir = saved_model(family, "mean", kcbert, tmp_path)
    cls_model, _, cls_dir = saved_model(family, "cls", kcbert, tmp_path)
    assert not isinstance(cls_model, MeanPooled)
    probs = {
        name: Predictor.from_dir(folder, device="cpu").predict_proba([SHORT[0]], [SHORT[1]])[0]
        for name, folder in (("mean", mean_dir), ("cls", cls_dir))
    }
    assert np.abs(probs["mean"] - probs["cls"]).max() > 1e-4
