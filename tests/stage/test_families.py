"""Every encoder family the KLUE baselines use, through the real stages: BERT (kcbert-base,
klue/bert-base), BERT with XLM-R's tokenizer (multilingual-e5-small), RoBERTa with a WordPiece
tokenizer and one segment embedding (klue/roberta-*), XLM-RoBERTa with its own SentencePiece
tokenizer and no segment ids (xlm-roberta-base), ELECTRA (KoELECTRA). Each is a tiny
random checkpoint built here and published encoder-only, as those are on the Hub; each goes
featurize -> train -> evaluate -> served through ONNX Runtime and OpenVINO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import AutoConfig, AutoModel

from klue_nli.core.errors import UserError
from klue_nli.data.encoding import load_tokenizer
from klue_nli.inference.predictor import Predictor
from stages.download import download
from stages.evaluate import evaluate
from stages.featurize import featurize
from stages.train import train

# family -> (model_type, tokenizer source fixture, segment embeddings, ONNX inputs)
FAMILIES = {
    "bert": ("bert", "kcbert", 2, ["input_ids", "token_type_ids", "attention_mask"]),
    "bert-xlmr-tokenizer": ("bert", "e5_folder", 2, ["input_ids", "attention_mask"]),
    "roberta": ("roberta", "kcbert", 1, ["input_ids", "attention_mask"]),
    "xlm-roberta": ("xlm-roberta", "e5_folder", 1, ["input_ids", "attention_mask"]),
    "electra": ("electra", "kcbert", 2, ["input_ids", "token_type_ids", "attention_mask"]),
}
HEADS = {
    "bert": "BertForSequenceClassification",
    "roberta": "RobertaForSequenceClassification",
    "xlm-roberta": "XLMRobertaForSequenceClassification",
    "electra": "ElectraForSequenceClassification",
}


def tiny_checkpoint(model_type: str, tokenizer_source: str, types: int, dest: Path) -> Path:
    """A 2-layer, hidden-32 encoder of the family with the given real tokenizer, saved
    encoder-only (no classifier) with its tokenizer, as the Hub checkpoints are."""
    tokenizer = load_tokenizer(tokenizer_source, do_lower_case=False)
    extra = {"embedding_size": 32} if model_type == "electra" else {}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        type_vocab_size=types,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=130 if model_type in ("roberta", "xlm-roberta") else 128,
        **extra,
    )
    AutoModel.from_config(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_runs_from_features_to_onnx_serving(
    family, request, make_params, workdir, tmp_path
):
    model_type, source_fixture, types, inputs = FAMILIES[family]
    source = str(request.getfixturevalue(source_fixture))
    checkpoint = tiny_checkpoint(model_type, source, types, tmp_path / family)
    params = make_params(model={"name_or_path": str(checkpoint), "init": "pretrained"})
    download(params)
    featurize(params)

    # the feature cache holds segment ids exactly when the model takes them
    cached = load_file(workdir / "data/features/train.safetensors")
    assert ("token_type_ids" in cached) == ("token_type_ids" in inputs)
    assert load_tokenizer("data/features/tokenizer").model_input_names == inputs

    metrics = train(params)
    assert metrics["steps"] == params.train.max_steps
    saved = AutoConfig.from_pretrained(workdir / "models/best")
    assert saved.model_type == model_type
    assert saved.architectures == [HEADS[model_type]]

    report = evaluate(params)
    assert 0 < report["accuracy"] < 1  # 402 dev pairs, a random-ish model: neither extreme

    # served through its ONNX graph (ONNX Runtime or OpenVINO), which takes the model's inputs
    served = Predictor.from_dir(workdir / "models/best", device="cpu", runtime="onnxruntime")
    torch_run = Predictor.from_dir(workdir / "models/best", device="cpu", runtime="torch")
    graph_inputs = [i.name for i in served._forward.session.get_inputs()]
    assert sorted(graph_inputs) == sorted(inputs)
    premises = ["오늘은 비가 온다.", "그는 학교에 갔다.", "고양이가 잔다."]
    hypotheses = ["오늘은 맑다.", "그는 집에 있었다.", "동물이 자고 있다."]
    onnx_probs = served.predict_proba(premises, hypotheses)
    torch_probs = torch_run.predict_proba(premises, hypotheses)
    assert np.abs(onnx_probs - torch_probs).max() < 1e-5
    openvino = Predictor.from_dir(
        workdir / "models/best", device="cpu", runtime="openvino", quantize="none"
    )
    assert np.abs(openvino.predict_proba(premises, hypotheses) - torch_probs).max() < 1e-4


def test_an_unsupported_model_type_gets_one_line_naming_the_supported(make_params, tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32}')
    from klue_nli.model.modeling import load_config

    with pytest.raises(UserError) as err:
        load_config(str(folder))
    assert "\n" not in str(err.value)
    assert str(err.value).endswith("of model_type 'bert', 'roberta', 'xlm-roberta', 'electra'")
