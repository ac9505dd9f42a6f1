"""`dvc exp run -S` arguments for the Makefile's two recipes.

- demo: a small randomly initialised BERT (the real kcbert tokenizer) on a short schedule.
- full: the original recipe; undoes the demo's overrides and keeps any other edit.

Both take the data mirror and the kcbert folder from KLUE_NLI_MIRROR and KCBERT_DIR. They
become params (data.mirror, model.name_or_path), so DVC sees a change and reruns the right
stages; with neither set, the official download and the Hub model are used.

    python -m klue_nli.recipes demo   # prints e.g. -S model.init=random -S train.epochs=10
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from klue_nli.params import PARAMS_FILE, Params, flatten, params_to_dict

DEMO_OVERRIDES: dict[str, Any] = {
    "model.init": "random",
    # An untrained 2-layer BERT needs a larger step size than fine-tuning does.
    "train.learning_rate": 3e-4,
    "train.epochs": 10,
}
ENV_KEYS = {"KLUE_NLI_MIRROR": "data.mirror", "KCBERT_DIR": "model.name_or_path"}


def targets(recipe: str, env: Mapping[str, str]) -> dict[str, Any]:
    defaults = flatten(params_to_dict(Params()))
    wanted = {key: defaults[key] for key in DEMO_OVERRIDES}
    if recipe == "demo":
        wanted.update(DEMO_OVERRIDES)
    for var, key in ENV_KEYS.items():
        wanted[key] = env.get(var) or defaults[key]
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
    parser.add_argument("recipe", choices=["demo", "full"])
    parser.add_argument("--params", default=PARAMS_FILE)
    args = parser.parse_args(argv)
    with open(args.params, encoding="utf-8") as fh:
        current = flatten(yaml.safe_load(fh) or {})
    print(shlex.join(set_args(args.recipe, current, os.environ)))


if __name__ == "__main__":
    main()
