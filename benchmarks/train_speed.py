"""`make train-speed`: ways of doing the demo's fine-tuning work side by side in one run, each
at the same schedule (the same number of training examples, from the same pretrained
weights), against the demo's own way: examples/s and accuracy on the validation split.

- baseline: the demo's (recipes/demo.yaml: batch 32, learning rate 1e-4, length-grouped
  batches, word embeddings and the lowest 4 encoder layers frozen, the precision
  `train.precision: auto` picks here);
- compile: the same with the model under torch.compile (Inductor's C++ kernels on CPU, bf16
  through oneDNN where the CPU has it);
- batch 64: twice the batch at twice the learning rate (linear scaling), half the steps;
- padded: batches in random order, padded to their longest pair (no length grouping);
- frozen 6: the lowest 6 encoder layers kept as pretrained instead of 4.

A variant is worth adopting at >= 1.25x the baseline's examples/s with validation accuracy
within two standard errors of the difference. Needs `make demo` first (its feature cache).
Writes benchmarks/train_speed.json, with the run's date, commit and CPU.

    python -m benchmarks.train_speed [--examples 3840] [--features data/features]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.base import train_probe
from klue_nli.core.cpus import cpu_description
from klue_nli.core.io import atomic_write_json
from klue_nli.core.params import PARAMS_FILE, params_from_dict
from klue_nli.experiments.recipes import committed_tree, overlay
from klue_nli.model.precision import resolve_precision

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# name -> (batch size, learning rate, extra probe arguments; a later one wins)
VARIANTS = {
    "baseline": (32, 1e-4, []),
    "compile": (32, 1e-4, ["--compile"]),
    "batch64": (64, 2e-4, []),
    "padded": (32, 1e-4, ["--padding", "dynamic"]),
    "frozen6": (32, 1e-4, ["--freeze-layers", "6"]),
}
ADOPT_RATIO = 1.25


def compare(runs: dict[str, dict], val_records: int) -> dict:
    """Each variant against the baseline: the speed ratio, the accuracy difference and its
    standard error (two proportions on the same validation pairs, taken as independent)."""
    base = runs["baseline"]
    out = {}
    for name, run in runs.items():
        p, q = base["val_acc"], run["val_acc"]
        se = math.sqrt((p * (1 - p) + q * (1 - q)) / val_records)
        ratio = run["examples_per_s"] / base["examples_per_s"]
        out[name] = {
            "examples_per_s": round(run["examples_per_s"], 1),
            "val_acc": round(q, 4),
            "speed_ratio": round(ratio, 3),
            "val_acc_diff": round(q - p, 4),
            "diff_standard_error": round(se, 4),
            "adopt": name != "baseline" and ratio >= ADOPT_RATIO and abs(q - p) <= 2 * se,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=3840, help="training examples each")
    parser.add_argument("--features", default=None, help="default: paths.features_dir")
    parser.add_argument("--warmup", type=int, default=6, help="steps left out of the timing")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="which, comma-separated (baseline first)"
    )
    args = parser.parse_args()
    chosen = ["baseline", *(v for v in args.variants.split(",") if v and v != "baseline")]
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"train-speed: unknown variants {sorted(unknown)} (of {list(VARIANTS)})")
    params = params_from_dict(committed_tree(ROOT / PARAMS_FILE))
    features = Path(args.features or params.paths.features_dir)
    meta = features / "meta.json"
    if not meta.exists():
        raise SystemExit(f"train-speed: no feature cache in {features}; run `make demo` first")
    val_records = json.loads(meta.read_text())["val"]["records"]
    model = os.environ.get("E5_MODEL") or "intfloat/multilingual-e5-small"
    frozen = str(overlay("demo")["train.freeze_layers"])  # the demo's way is the baseline
    precision = resolve_precision(params.train)
    runs = {}
    for name in chosen:
        batch, lr, extra = VARIANTS[name]
        probe = ["--features", str(features), "--padding", "grouped", "--pretrained"]
        probe += ["--freeze-embeddings", "--freeze-layers", frozen]
        probe += ["--pooling", "mean", "--model", model]
        probe += ["--precision", precision, "--batch-size", str(batch), "--lr", str(lr)]
        probe += ["--steps", str(args.examples // batch), "--warmup", str(args.warmup)]
        probe += ["--validate", *extra]  # a later --padding wins
        print(f"train-speed: {name} ...", flush=True)
        runs[name] = train_probe(probe)
        print(
            f"train-speed: {name}: {runs[name]['examples_per_s']:.1f} examples/s, "
            f"validation {runs[name]['val_acc']:.4f}",
            flush=True,
        )
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "cpu": cpu_description(),
        "cores": os.cpu_count(),
        "precision": precision,
        "examples_each": args.examples,
        "val_records": val_records,
        "adopt_rule": f">= {ADOPT_RATIO}x examples/s, validation within 2 standard errors",
        "variants": compare(runs, val_records),
        "runs": runs,
    }
    atomic_write_json(HERE / "train_speed.json", result)
    print(json.dumps(result["variants"], indent=2))


if __name__ == "__main__":
    main()
