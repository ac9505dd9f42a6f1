"""The CPU runtimes `make variants` measures beside ONNX Runtime and PyTorch (variants.py):

- OpenVINO fp32 and bf16 on the plain ONNX graph (the product's serve.runtime openvino);
- OpenVINO int8 from NNCF's post-training quantization, calibrated on training pairs;
- OpenVINO int8 from NNCF's accuracy-aware quantization: layers go back to fp32, most
  damaging first, until the int8 model keeps PyTorch fp32's answers on validation pairs
  (never dev) within `MAX_AGREEMENT_DROP`, or the budget (`TUNER_BUDGET`) is spent;
- CTranslate2 fp32, int8 and bf16 (where this CPU has kernels for it): its encoder computes
  the last hidden states of unpadded pairs, and the classifier head is applied here in NumPy
  as the model's head does (klue_nli/network/pooling.py: BERT's pooler or the masked mean,
  then its classifier; RoBERTa's and XLM-R's dense-tanh-projection). CTranslate2 converts
  BERT, RoBERTa and XLM-RoBERTa encoders, not ELECTRA.

Each returns a `Forward` (int64 batch -> logits) the Predictor runs, as the service would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from klue_nli.data.encoding import pad_arrays
from klue_nli.data.features import FeatureSplit, split_file
from klue_nli.inference.openvino import OpenVinoForward
from klue_nli.inference.predictor import Forward, resolve_quantize

# The accuracy-aware tuner's budget: validation pairs it checks each candidate on, the most
# fp32-restoring iterations, the pairs its layer ranking uses, and the drop it may accept in
# agreement with fp32's answers (the served default's rule: at least 99 % kept). Its cost is
# the ranking (every group of quantizers reverted, compiled and run): with 300 / 8 / 100 it
# took 15 minutes on e5 and 2 cores and still kept only 94 % on validation, so the bench
# gives it a budget that fits and reports what it reached. Most of the ranking is compiling
# each candidate (1.6 s of e5's, 245 of 390 s measured): one ranking worker per core.
TUNER_BUDGET = {"validation_pairs": 200, "max_iterations": 3, "ranking_pairs": 25}
MAX_AGREEMENT_DROP = 0.01
CT2_TYPES = {"fp32": "float32", "int8": "int8_float32", "bf16": "bfloat16"}
CT2_FAMILIES = ("bert", "roberta", "xlm-roberta")


def feeds(split: FeatureSplit, inputs: tuple[str, ...], pad_id: int, rows, per: int) -> list:
    """Padded batches of `per` pairs of the feature split's `rows`, as a graph takes them."""
    out = []
    rows = list(rows)
    for start in range(0, len(rows), per):
        pairs = [split.pair(i) for i in rows[start : start + per]]
        types = None if pairs[0][1] is None else [t for _, t in pairs]
        batch = pad_arrays([ids for ids, _ in pairs], types, pad_id)
        out.append({k: batch[k].astype(np.int64) for k in inputs})
    return out


def openvino_forwards(graph: Path, inputs: tuple[str, ...], threads: int) -> dict[str, Forward]:
    return {
        "openvino fp32": OpenVinoForward(graph, inputs, threads, "none", "plain graph"),
        "openvino bf16": OpenVinoForward(graph, inputs, threads, "bf16", "plain graph"),
    }


def nncf_forwards(
    graph: Path, inputs: tuple[str, ...], features: Path, pad_id: int, threads: int
) -> tuple[dict[str, Forward], dict]:
    """NNCF's int8 (calibrated on training pairs) and its accuracy-aware int8 (checked on
    validation pairs); the tuner's budget and what it spent."""
    import time

    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    train = FeatureSplit.load(split_file(features, "train"))
    val = FeatureSplit.load(split_file(features, "val"))
    calibration = nncf.Dataset(feeds(train, inputs, pad_id, range(min(300, len(train))), 16))
    core = ov.Core()
    fp32 = core.compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    pairs = feeds(val, inputs, pad_id, range(min(TUNER_BUDGET["validation_pairs"], len(val))), 1)
    # each item carries fp32's answer: the tuner validates subsets of the items in any order
    checked = [(feed, int(np.argmax(fp32(feed)[0]))) for feed in pairs]

    def agreement(compiled, items) -> tuple[float, list[float]]:
        same = [float(int(np.argmax(compiled(feed)[0])) == answer) for feed, answer in items]
        return float(np.mean(same)), same

    calibrated = nncf.quantize(
        core.read_model(str(graph)), calibration, model_type=nncf.ModelType.TRANSFORMER
    )
    started = time.perf_counter()
    tuned = nncf.quantize_with_accuracy_control(
        core.read_model(str(graph)),
        calibration,
        nncf.Dataset(checked),
        agreement,
        max_drop=MAX_AGREEMENT_DROP,
        model_type=nncf.ModelType.TRANSFORMER,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=TUNER_BUDGET["max_iterations"],
            ranking_subset_size=TUNER_BUDGET["ranking_pairs"],
            num_ranking_workers=threads,
        ),
    )
    spent = time.perf_counter() - started
    # the layers left in floating point at the precision this CPU computes natively (what
    # OpenVINO's CPU plugin picks by itself, and serve.quantize auto resolves to)
    rest = resolve_quantize("auto", "openvino")
    forwards = {
        "openvino int8 (NNCF)": OpenVinoForward(calibrated, inputs, threads, rest, "NNCF"),
        "openvino int8 (NNCF, accuracy-aware)": OpenVinoForward(
            tuned, inputs, threads, rest, "NNCF, accuracy-aware"
        ),
    }
    tuner = {
        "tuner": "NNCF quantize_with_accuracy_control",
        "metric": "argmax agreement with fp32 on validation pairs (never dev)",
        "max_drop": MAX_AGREEMENT_DROP,
        **TUNER_BUDGET,
        "ranking_workers": threads,
        "seconds": round(spent, 1),
        "validation_agreement": agreement(core.compile_model(tuned, "CPU"), checked)[0],
    }
    return forwards, tuner


class Ct2Forward:
    """CTranslate2's encoder and the model's classifier head in NumPy."""

    name = "ctranslate2"
    source = "converted"

    def __init__(self, folder: Path, head: dict, compute_type: str, threads: int) -> None:
        import ctranslate2

        self.encoder = ctranslate2.Encoder(
            str(folder), device="cpu", compute_type=compute_type, intra_threads=threads
        )
        self.head = head

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        mask = batch["attention_mask"]
        lengths = mask.sum(axis=1)
        ids = [row[:n].tolist() for row, n in zip(batch["input_ids"], lengths, strict=True)]
        kwargs = {}
        if "token_type_ids" in batch:
            types = batch["token_type_ids"]
            kwargs["token_type_ids"] = [
                row[:n].tolist() for row, n in zip(types, lengths, strict=True)
            ]
        out = self.encoder.forward_batch(ids, **kwargs)
        hidden = np.array(out.last_hidden_state, dtype=np.float32)
        pooler = None if out.pooler_output is None else np.array(out.pooler_output, np.float32)
        return apply_head(self.head, hidden, mask[:, : hidden.shape[1]], pooler)


def apply_head(head: dict, hidden: np.ndarray, mask: np.ndarray, pooler) -> np.ndarray:
    """The sequence classifier's head on the encoder's output, as transformers computes it."""
    m = mask[..., None].astype(np.float32)
    if head["pooling"] == "mean":
        features = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    elif head["family"] == "bert":
        features = pooler
    else:
        features = hidden[:, 0]
    if head["family"] == "bert":  # dropout (inactive), then the linear classifier
        return features @ head["classifier.weight"].T + head["classifier.bias"]
    dense = np.tanh(features @ head["classifier.dense.weight"].T + head["classifier.dense.bias"])
    return dense @ head["classifier.out_proj.weight"].T + head["classifier.out_proj.bias"]


def ct2_forwards(model_dir: Path, tmp: Path, threads: int) -> tuple[dict[str, Forward], dict]:
    """CTranslate2 at each compute type this CPU has kernels for; the types it refused."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    family = config["model_type"]
    if family not in CT2_FAMILIES:
        return {}, {"all": f"CTranslate2 converts no {family} encoder"}
    # its converter reads a key transformers 5 no longer writes (absolute positions: ours)
    source = tmp / "ct2-source"
    source.mkdir()
    for f in model_dir.iterdir():
        if f.is_file() and f.name != "config.json":
            os.symlink(f.resolve(), source / f.name)
    patched = config | {"position_embedding_type": "absolute"}
    (source / "config.json").write_text(json.dumps(patched))
    converted = tmp / "ct2"

    class Converter(TransformersConverter):
        """RoBERTa's positions start after its padding index; CTranslate2 skips that many
        rows only when the index is above 0 (RoBERTa's own is 1). For a tokenizer whose
        padding id is 0 one row is put in front, so its skip lands on the same row."""

        def load_model(self, model_class, model_name_or_path, **kwargs):
            import torch

            model = super().load_model(model_class, model_name_or_path, **kwargs)
            encoder = getattr(model, "roberta", model)  # a classifier or the bare encoder
            positions = getattr(encoder.embeddings, "position_embeddings", None)
            if positions is not None and positions.padding_idx == 0:
                weight = positions.weight.data
                positions.weight = torch.nn.Parameter(torch.cat([weight[:1], weight]))
                positions.padding_idx = 1
            return model

    Converter(str(source)).convert(str(converted), force=True)
    weights = load_file(str(model_dir / "model.safetensors"))
    head = {k: v.astype(np.float32) for k, v in weights.items() if k.startswith("classifier.")}
    head |= {"family": "bert" if family == "bert" else "roberta"}
    head |= {"pooling": config.get("classifier_pooling") or "cls"}
    supported = ctranslate2.get_supported_compute_types("cpu")
    forwards, refused = {}, {}
    for dtype, compute_type in CT2_TYPES.items():
        if compute_type not in supported:
            refused[dtype] = f"CTranslate2 has no {compute_type} kernels for this CPU"
            continue
        forwards[f"ctranslate2 {dtype}"] = Ct2Forward(converted, head, compute_type, threads)
    return forwards, refused
