"""`make variants`: the ONNX graph of one model in each quantization the field offers, side by
side in one run, against the fp32 graph the service runs by default (as exported).

For each variant: pairs/s in process at batch 1 and batch 32, argmax agreement with PyTorch
fp32 and accuracy on the dev file, and the arithmetic it achieves (2 x non-embedding
parameters x real tokens per second) against the cores' peak for its data type. Static int8
is calibrated on training pairs of the feature cache (never on dev). Writes
benchmarks/variants.json.

    python -m benchmarks.variants          # make variants: the served model, after make demo
    python -m benchmarks.variants --model-dir DIR --features DIR --dev DIR
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from devtools.stamp import run_stamp
from klue_nli.core.cpus import cpu_description
from klue_nli.core.io import atomic_write_json
from klue_nli.data.encoding import pad_arrays
from klue_nli.data.features import FeatureSplit, split_file
from klue_nli.data.klue import read_split, split_filename
from klue_nli.inference.onnx import OnnxForward, export_graph
from klue_nli.inference.predictor import Predictor, resolve_quantize

HERE = Path(__file__).resolve().parent
CALIBRATION_PAIRS = 300
# Dev pairs each variant is scored on: agreement's standard error near 99 % is then 0.35 point,
# and 0.16 at the served variant's 99.8 % (the served model's own figure, in metrics/eval.json,
# is on all 2,400); 800 rather than 1,200 keeps `make bench` within 30 minutes. kcbert-base's shape
# has random weights: its agreement is a check of each runtime on that shape (0.5 point at
# 99 % on 400 pairs), and its dev accuracy means nothing.
DEV_PAIRS = 800
SHAPE_DEV_PAIRS = 400
GEMM = 2048  # the side of the square products timed against the peak


def flop_per_cycle(flags: list[str]) -> dict[str, int]:
    """Peak arithmetic per cycle per core, from the CPU's flags: vector lanes x 2 (multiply
    and add) x 2 (two vector units with multiply-add, as x86 server cores have); bf16 dot
    products (AVX512-BF16) twice fp32's lanes, int8 (VNNI) four times; without them, fp32's.
    Times the clock /proc/cpuinfo states (a virtual machine's nominal clock: boost may exceed
    it), so the bench also measures what one large matrix product reaches per data type."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = lanes * 2 * 2
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)
    bf16 = {"avx512_bf16", "amx_bf16"} & set(flags)
    return {"fp32": fp32, "bf16": 2 * fp32 if bf16 else fp32, "int8": 4 * fp32 if vnni else fp32}


def gemm_ceiling(threads: int) -> dict[str, float]:
    """FLOP/s one large matrix product reaches per data type on these cores, with the fastest
    kernel at hand: ONNX Runtime's for fp32 (PyTorch's fp32 product is slower here), PyTorch's
    (oneDNN) for bf16, PyTorch's int8 product for int8."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    def best(run) -> float:
        run()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return 2 * GEMM**3 / min(times)

    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM, GEMM), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [GEMM, GEMM]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [GEMM, GEMM])],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), options)
    t = torch.from_numpy(a)
    b16 = t.to(torch.bfloat16)
    i8 = torch.randint(-128, 127, (GEMM, GEMM), dtype=torch.int8)
    return {
        "fp32": best(lambda: session.run(None, {"a": a, "b": a})),
        "bf16": best(lambda: b16 @ b16),
        "int8": best(lambda: torch._int_mm(i8, i8)),
    }


def clock_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000
    except OSError:
        pass
    return float("nan")


def non_embedding_parameters(model) -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if "embeddings" not in name.split(".")
    )


class Calibration:
    """onnxruntime.quantization's CalibrationDataReader over feature-cache pairs."""

    def __init__(self, split: FeatureSplit, inputs: tuple[str, ...], pad_id: int, n: int):
        rows = list(range(min(n, len(split))))
        pairs = [split.pair(i) for i in rows]
        self.batches = []
        for start in range(0, len(pairs), 16):
            chunk = pairs[start : start + 16]
            types = None if chunk[0][1] is None else [t for _, t in chunk]
            batch = pad_arrays([ids for ids, _ in chunk], types, pad_id)
            self.batches.append({k: batch[k] for k in inputs})
        self.it = iter(self.batches)

    def get_next(self):
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.batches)


def ffn_outputs(graph: Path) -> list[str]:
    """The MatMul of each layer's feed-forward output projection (`layer.N.output.dense`, as
    the BERT, RoBERTa and ELECTRA encoders of transformers name it)."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    pattern = re.compile(r"layer\.\d+/output/dense/MatMul$")
    return [n.name for n in nodes if n.op_type == "MatMul" and pattern.search(n.name)]


def build_variants(model, tokenizer, features: Path | None, tmp: Path) -> dict[str, tuple]:
    """name -> (graph path, inputs, data type) of each ONNX variant."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    plain, inputs, _ = export_graph(
        model, tokenizer.model_input_names, tmp / "plain", external=False
    )
    fused, _, ops = export_graph(
        model, tokenizer.model_input_names, tmp / "fused", external=False, fuse=True
    )
    out = {"fp32 plain": (plain, inputs, "fp32")}
    if ops is not None:  # every layer fused (else the optimizer's graph is not kept)
        out["fp32 fused"] = (fused, inputs, "fp32")
    # Dynamic int8 from the plain graph (as the service's int8, klue_nli/inference/onnx.py).
    # The third keeps the feed-forward output projections in fp32: the most sensitive matrix
    # products (their input, GELU's output, has the widest range; excluding them alone took
    # e5's agreement from 93 % to 97 %, no other group of layers moved it by more than 1 point).
    dynamic = {
        "int8 dynamic per tensor": {"per_channel": False},
        "int8 dynamic per channel": {"per_channel": True},
        "int8 dynamic per channel, FFN output fp32": {
            "per_channel": True,
            "op_types_to_quantize": ["MatMul"],
            "nodes_to_exclude": ffn_outputs(plain),
        },
    }
    for name, options in dynamic.items():
        path = tmp / f"{re.sub(r'[ ,]+', '-', name)}.onnx"
        quantize_dynamic(
            str(plain),
            str(path),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": 1},  # FLOAT: untyped fused-operator outputs
            **options,
        )
        out[name] = (path, inputs, "int8")
    if features is not None:  # the train split: never dev
        split = FeatureSplit.load(split_file(features, "train"))
        pre = tmp / "pre.onnx"
        quant_pre_process(str(plain), str(pre), skip_symbolic_shape=True)
        path = tmp / "int8-static.onnx"
        quantize_static(
            str(pre),
            str(path),
            Calibration(split, inputs, tokenizer.pad_token_id, CALIBRATION_PAIRS),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # the matrix products only: with every operator quantized, every answer was one
            # class (probably the attention mask's additive -3.4e38 setting a scale)
            op_types_to_quantize=["MatMul"],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        out["int8 static QDQ per channel"] = (path, inputs, "int8")
    return out


# (serve.runtime, serve.quantize as this CPU resolves it) -> the variant that configuration serves
SERVED = {
    ("onnxruntime", "none"): "onnxruntime fp32 plain",
    ("onnxruntime", "int8"): "onnxruntime int8 dynamic per tensor",
    ("openvino", "none"): "openvino fp32",
    ("openvino", "bf16"): "openvino bf16",
    ("torch", "none"): "pytorch fp32",
    ("torch", "bf16"): "pytorch bf16",
}
REFERENCE = "pytorch fp32"
MIN_AGREEMENT = 0.99  # the rule for the CPU default: the answers kept...
MAX_ACCURACY_LOSS = 0.005  # ...and at most half a point of dev accuracy lost


def served_name(runtime: str, quantize: str) -> str:
    try:
        return SERVED[(runtime, resolve_quantize(quantize, runtime))]
    except KeyError:
        msg = f"variants: serve.runtime={runtime} quantize={quantize} is not measured"
        raise SystemExit(msg) from None


def keeps_answers(row: dict, reference: dict) -> bool:
    return (
        row["agreement"] >= MIN_AGREEMENT
        and reference["dev_accuracy"] - row["dev_accuracy"] <= MAX_ACCURACY_LOSS
    )


def fastest_keeping(rows: dict[str, dict]) -> str:
    """The variant with the most pairs/s at batch 32 among those keeping the answers."""
    keep = [n for n, row in rows.items() if keeps_answers(row, rows[REFERENCE])]
    return max(keep, key=lambda n: rows[n]["batch32_pairs_per_s"])


def rates(predictor: Predictor, premises: list[str], hypotheses: list[str]) -> dict:
    predictor.predict_proba(premises[:32], hypotheses[:32], 32)  # warm-up
    n32, n1 = min(128, len(premises)), 32  # per round; the rounds give the median
    real = predictor.tokens_real
    start = time.perf_counter()
    predictor.predict_proba(premises[:n32], hypotheses[:n32], 32)
    wall = time.perf_counter() - start
    tokens = predictor.tokens_real - real
    start = time.perf_counter()
    for p, h in zip(premises[:n1], hypotheses[:n1], strict=True):
        predictor.predict_proba([p], [h])
    return {
        "batch32_pairs_per_s": n32 / wall,
        "batch1_pairs_per_s": n1 / (time.perf_counter() - start),
        "real_tokens_per_s_batch32": tokens / wall,
    }


def runtime_predictors(
    reference: Predictor, graphs: dict, model_dir: Path, features: Path | None, tmp: Path
) -> tuple[dict[str, tuple[Predictor, str]], dict]:
    """Every variant but the reference, as Predictors, with its data type; what was refused
    or tuned, by runtime."""
    import torch

    from benchmarks import runtimes

    threads = torch.get_num_threads()
    tok, config, fit = reference.tokenizer, reference.config, reference.calibration
    out: dict[str, tuple[Predictor, str]] = {}
    bf16 = Predictor.from_dir(model_dir, device="cpu", runtime="torch")
    bf16.model.to(torch.bfloat16)
    out["pytorch bf16"] = (bf16, "bf16")
    for name, (path, inputs, dtype) in graphs.items():
        forward = OnnxForward(path, inputs, threads, source=name)
        out[f"onnxruntime {name}"] = (
            Predictor(tok, forward, config, fit, runtime="onnxruntime"),
            dtype,
        )
    plain, inputs, _ = graphs["fp32 plain"]
    forwards = runtimes.openvino_forwards(plain, inputs, threads)
    notes: dict = {}
    if features is not None:  # calibrated and tuned on train and validation pairs: never dev
        tuned, notes["nncf"] = runtimes.nncf_forwards(
            plain, inputs, features, tok.pad_token_id, threads
        )
        forwards |= tuned
    ct2, notes["ctranslate2_refused"] = runtimes.ct2_forwards(model_dir, tmp, threads)
    forwards |= ct2
    for name, forward in forwards.items():
        dtype = "bf16" if "bf16" in name else "int8" if "int8" in name else "fp32"
        out[name] = (Predictor(tok, forward, config, fit, runtime=forward.name), dtype)
    return out, notes


def measure(
    model_dir: Path, dev: Path, features: Path | None, rounds: int, n_pairs: int = DEV_PAIRS
) -> dict:
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    threads = torch.get_num_threads()
    reference = Predictor.from_dir(model_dir, device="cpu", runtime="torch")
    pairs = read_split(dev, "dev")[:n_pairs]
    premises, hypotheses = [e.premise for e in pairs], [e.hypothesis for e in pairs]
    gold = np.asarray([reference.labels.index(e.label) for e in pairs])
    expected = reference.predict_proba(premises, hypotheses, 32).argmax(1)
    params = non_embedding_parameters(reference.model)
    cpu = cpu_description()
    peak = {k: v * clock_ghz() * 1e9 * threads for k, v in flop_per_cycle(cpu["flags"]).items()}
    ceiling = gemm_ceiling(threads)
    with tempfile.TemporaryDirectory(prefix="klue-nli-variants-") as tmp:
        graphs = build_variants(reference.model, reference.tokenizer, features, Path(tmp))
        others, notes = runtime_predictors(reference, graphs, model_dir, features, Path(tmp))
        predictors = {REFERENCE: (reference, "fp32"), **others}
        rows: dict[str, dict] = {}
        for name, (predictor, _) in predictors.items():
            answers = predictor.predict_proba(premises, hypotheses, 32).argmax(1)
            rows[name] = {
                "agreement": float(np.mean(answers == expected)),
                "dev_accuracy": float(np.mean(answers == gold)),
                "rounds": [],
            }
        for _ in range(rounds):  # interleaved: each round measures every variant once
            for name, (predictor, _) in predictors.items():
                rows[name]["rounds"].append(rates(predictor, premises, hypotheses))
    for name, row in rows.items():
        dtype = predictors[name][1]
        for key in ("batch32_pairs_per_s", "batch1_pairs_per_s", "real_tokens_per_s_batch32"):
            row[key] = float(np.median([r[key] for r in row["rounds"]]))
        flops = 2 * params * row["real_tokens_per_s_batch32"]
        row.update(
            keeps_answers=keeps_answers(row, rows[REFERENCE]),
            dtype=dtype,
            tflops=flops / 1e12,
            share_of_peak=flops / peak[dtype],
            share_of_gemm=flops / ceiling[dtype],
        )
    return {
        "model": model_dir.name,  # the folder's name only: no local path in a committed file
        "non_embedding_parameters": params,
        "dev_pairs": len(pairs),
        "threads": threads,
        "flop_per_cycle": flop_per_cycle(cpu["flags"]),
        "peak_tflops_at_stated_clock": {k: v / 1e12 for k, v in peak.items()},
        "gemm_tflops": {k: v / 1e12 for k, v in ceiling.items()},
        "runtimes": notes,
        "variants": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="default: the served model")
    parser.add_argument(
        "--dev", type=Path, default=Path("data/raw"), help="the KLUE dev file's folder"
    )
    parser.add_argument(
        "--features", type=Path, default=Path("data/features"), help="feature cache (calibration)"
    )
    parser.add_argument("--no-static", action="store_true", help="skip static int8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "variants.json")
    args = parser.parse_args()
    features = None if args.no_static else args.features
    if not (args.dev / split_filename("dev")).is_file() or not (features or args.dev).is_dir():
        print("variants: no data/raw or data/features; run `make demo` first", file=sys.stderr)
        raise SystemExit(1)
    model_dir = args.model_dir
    if model_dir is None:
        from klue_nli.inference.bento import latest

        model = latest()
        if model is None:
            print("variants: no exported model; run `make demo` first", file=sys.stderr)
            raise SystemExit(1)
        model_dir = Path(model.path)
    result = {
        **run_stamp(),
        "clock_ghz": clock_ghz(),
        **measure(model_dir, args.dev, features, args.rounds),
    }
    atomic_write_json(args.out, result)
    for name, row in result["variants"].items():
        print(
            f"{name:40s} agree {row['agreement']:.4f} dev {row['dev_accuracy']:.4f} "
            f"b32 {row['batch32_pairs_per_s']:.1f}/s b1 {row['batch1_pairs_per_s']:.1f}/s "
            f"{row['tflops']:.3f} TFLOP/s ({row['share_of_peak']:.0%} of {row['dtype']} peak, "
            f"{row['share_of_gemm']:.0%} of its GEMM)"
        )


if __name__ == "__main__":
    main()
