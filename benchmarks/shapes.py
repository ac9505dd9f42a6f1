"""`make shapes`: what bucketing the batch width does on OpenVINO, which compiles and keeps
kernels for every input shape it meets (the Predictor's `width_steps`).

The served model (`make demo`'s models/best) as the service runs it, on random batches of
dev pairs (1 to 32 pairs, as a serving worker's model calls come), once with each model call
padded to its own longest pair and once to its bucket (8 widths per power of two): each in
its own process, the shapes met, the padding's share of the tokens, the resident memory
gained over the calls and the seconds the second half of the calls took (most shapes seen by
then). Writes benchmarks/shapes.json.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CALLS = 600
SEED = 0


def probe(model_dir: Path, dev: Path, steps: int) -> dict:
    """In this process: RSS gained and the timed half of CALLS random batches."""
    import psutil

    from klue_nli.core.params import load_params
    from klue_nli.data.klue import read_split
    from klue_nli.inference.predictor import Predictor

    serve = load_params(ROOT / "params.yaml").serve
    predictor = Predictor.from_dir(model_dir, quantize=serve.quantize, runtime=serve.runtime)
    predictor.width_steps = steps
    pairs = [(e.premise, e.hypothesis) for e in read_split(dev, "dev")]
    rng = random.Random(SEED)
    batches = [rng.sample(pairs, rng.randint(1, 32)) for _ in range(CALLS)]
    widths: set[tuple[int, int]] = set()
    forward = predictor._forward

    def recorded(batch):
        widths.add(batch["input_ids"].shape)
        return forward(batch)

    predictor._forward = recorded
    process = psutil.Process()
    predictor.predict_proba(*zip(*batches[0], strict=True), 32)  # compiled, one shape met
    start_rss = process.memory_info().rss
    for batch in batches[: CALLS // 2]:
        predictor.predict_proba([p for p, _ in batch], [h for _, h in batch], 32)
    start = time.perf_counter()
    for batch in batches[CALLS // 2 :]:
        predictor.predict_proba([p for p, _ in batch], [h for _, h in batch], 32)
    return {
        "width_steps": steps,
        "padding_share": 1 - predictor.tokens_real / predictor.tokens_padded,
        "shapes": len(widths),
        "rss_gained_mb": (process.memory_info().rss - start_rss) / 2**20,
        "second_half_s": time.perf_counter() - start,
        "runtime": predictor.runtime,
        "quantize": predictor.quantize,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        print(json.dumps(probe(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
        return
    from klue_nli.core.cpus import cpu_description
    from klue_nli.core.io import atomic_write_json
    from klue_nli.core.params import load_params

    paths = load_params(ROOT / "params.yaml").paths
    model_dir, dev = ROOT / paths.model_dir, ROOT / paths.raw_dir
    if not (model_dir / "config.json").exists():
        raise SystemExit(f"shapes: no trained model in {model_dir}: run `make demo` first")
    runs = []
    for steps in (0, 8, 0, 8):  # interleaved: the machine's drift hits both alike
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.shapes", "--probe", str(model_dir), str(dev),
             str(steps)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).stdout  # fmt: skip
        runs.append(json.loads(out.strip().splitlines()[-1]))
    by = {m: [r for r in runs if r["width_steps"] == m] for m in (0, 8)}
    mean = {m: sum(r["second_half_s"] for r in rs) / len(rs) for m, rs in by.items()}
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_description(),
        "model": model_dir.name,
        "calls": CALLS,
        "runs": runs,
        "speedup_bucketed": mean[0] / mean[8],
    }
    atomic_write_json(HERE / "shapes.json", results)
    for r in runs:
        print(
            f"widths per octave {r['width_steps'] or 'exact'}: {r['shapes']} shapes, "
            f"{r['padding_share']:.0%} padding, "
            f"+{r['rss_gained_mb']:.0f} MB, second half {r['second_half_s']:.1f} s"
        )
    print(f"bucketed: {results['speedup_bucketed']:.2f}x the calls/s")


if __name__ == "__main__":
    main()
