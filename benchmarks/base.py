"""`make bench`, section `base`: kcbert-base's real shape (12 layers, hidden 768, 109 M
parameters; `config.json` of KCBERT_DIR) with random weights: the compute users feel, with
nothing downloaded. Also featurize at KLUE's size and the tutorial's own inference loop.

Every figure is a same-run comparison on this machine: the original tutorial's way first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, BertForSequenceClassification

from klue_nli.core.manifest import write_manifest
from klue_nli.core.params import Params
from klue_nli.data.encoding import load_tokenizer
from klue_nli.data.klue import read_split, split_filename
from klue_nli.inference.predictor import Predictor
from klue_nli.network.calibration import Calibration, write_calibration

ROOT = Path(__file__).resolve().parent.parent
FEATURIZE_PAIRS = 25_000


def save_base_model(params: Params, folder: Path) -> Path:
    """kcbert-base's shape and tokenizer, a 3-way head, random weights (seeded)."""
    torch.manual_seed(7)
    tokenizer = load_tokenizer(params.model.name_or_path, do_lower_case=False)
    tokenizer.model_max_length = params.featurize.max_seq_length
    config = AutoConfig.from_pretrained(params.model.name_or_path)
    config.update(
        {
            "num_labels": 3,
            "id2label": dict(enumerate(params.labels)),
            "label2id": params.label2id,
            "architectures": ["BertForSequenceClassification"],
        }
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_calibration(folder, Calibration.none_fitted())  # random weights: nothing to fit on
    write_manifest(folder)
    return folder


def train_probe(args: list[str]) -> dict:
    """One benchmarks/train_probe.py run in its own process; its JSON figures."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_probe", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def train_throughput(
    params: Params,
    steps: int = 16,
    warmup: int = 2,
    base_size: bool = True,
    paddings: tuple[str, ...] = ("fixed", "dynamic", "grouped"),
) -> dict:
    """Examples/s, each in its own process (benchmarks/train_probe.py): padded to 64 (the
    original) against `paddings`' others (dynamic, length-grouped); at kcbert-base's size or
    the demo model's."""
    runs: dict = {}
    started = time.perf_counter()
    for padding in paddings:
        args = ["--features", params.paths.features_dir, "--padding", padding]
        args += ["--steps", str(steps), "--warmup", str(warmup)]
        args += ["--model", params.model.name_or_path, *(["--base"] if base_size else [])]
        runs[padding] = train_probe(args)
    fixed = runs["fixed"]["examples_per_s"]
    best = max(runs[k]["examples_per_s"] for k in runs if k != "fixed")
    # the bound on the ratio if a step's time followed its tokens: padded tokens per example
    # in the batches the probes drew, padded to 64 against grouped
    per_example = {k: runs[k]["padded_tokens_per_example"] for k in ("fixed", "grouped")}
    out = {
        **runs,
        "steps": steps,
        "ratio": best / fixed,
        "token_ratio_grouped": per_example["fixed"] / per_example["grouped"],
        "seconds": round(time.perf_counter() - started),
    }
    if "dynamic" in runs:
        out["ratio_dynamic"] = runs["dynamic"]["examples_per_s"] / fixed
    return out


def tutorial_pairs_per_s(model_dir: Path, premises: list[str], hypotheses: list[str]) -> float:
    """The tutorial's inference_fn: one pair at a time, padded to 64, fp32."""
    predictor = Predictor.from_dir(model_dir, device="cpu")
    tokenizer, model = load_tokenizer(str(model_dir)), predictor.model  # transformers', as then
    start = time.perf_counter()
    with torch.inference_mode():
        for p, h in zip(premises, hypotheses, strict=True):
            enc = tokenizer(
                p, h, max_length=64, padding="max_length", truncation=True, return_tensors="pt"
            )
            torch.softmax(model(**enc).logits, dim=-1)
    return len(premises) / (time.perf_counter() - start)


def featurize_at_scale(params: Params, work: Path, original, featurize) -> dict:
    """Featurize on >= 25,000 pairs in one pass (the sample's train file repeated), against
    the original pure-Python tokenizer on the same pairs."""
    raw = work / "raw-25k"
    raw.mkdir(exist_ok=True)
    train = json.loads((Path(params.paths.raw_dir) / split_filename("train")).read_text())
    copies = -(-FEATURIZE_PAIRS // len(train))
    big = [{**r, "premise": f"{r['premise']} ({k})"} for k in range(copies) for r in train]
    (raw / split_filename("train")).write_text(json.dumps(big, ensure_ascii=False))
    dev = (Path(params.paths.raw_dir) / split_filename("dev")).read_text()
    (raw / split_filename("dev")).write_text(dev)
    scaled = params.model_copy(
        update={
            "paths": params.paths.model_copy(
                update={"raw_dir": str(raw), "features_dir": str(work / "features-25k")}
            )
        }
    )
    n = sum(len(read_split(raw, s)) for s in ("train", "dev"))
    start = time.perf_counter()
    original(scaled)
    t_orig = time.perf_counter() - start
    start = time.perf_counter()
    featurize(scaled)
    t_ours = time.perf_counter() - start
    return {
        "pairs": n,
        "original_pairs_per_s": n / t_orig,
        "stage_pairs_per_s": n / t_ours,
        "ratio": t_orig / t_ours,
    }
