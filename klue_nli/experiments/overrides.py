"""Overrides of params.yaml keys, the one way the project applies them: `dvc exp run -S`'s.

`make demo` passes a recipe's `-S key=value` arguments to `dvc exp run`; the Prefect flow runs
stage by stage, so it applies the same arguments itself, with the function DVC's `-S` uses
(Hydra's override grammar; comments and key order kept), after checking the result against
params.yaml's schema: a wrong value leaves the file untouched and fails with one line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from klue_nli.core.errors import ParamsError, UserError
from klue_nli.core.params import PARAMS_FILE, flatten, load_params


def current_params(params_file: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml's keys as the file holds them now, flattened."""
    try:
        text = Path(params_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{params_file}: file not found") from None
    return flatten(yaml.safe_load(text) or {})


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """`key=value` strings (values read as YAML: 3, 0.1, null, true, text) as a mapping."""
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        out[key] = yaml.safe_load(value) if value else None
    return out


_BARE = re.compile(r"[\w./:@+-]+")


def format_value(value: Any) -> str:
    """A value as `dvc exp run -S` (Hydra's override grammar) reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _BARE.fullmatch(text) and isinstance(yaml.safe_load(text), str):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def apply_sets(params_file: Path, args: list[str]) -> dict[str, object]:
    """Apply `-S key=value` arguments (as `set_args` makes them) to `params_file`; the keys
    whose values changed, with their new values."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    sets = [arg for flag, arg in zip(args[::2], args[1::2], strict=True) if flag == "-S"]
    before = current_params(params_file)
    unknown = [s.partition("=")[0] for s in sets if s.partition("=")[0] not in before]
    if unknown:
        raise UserError(f"unknown params key(s): {', '.join(unknown)}")
    candidate = params_file.with_name(f".{params_file.stem}.candidate{params_file.suffix}")
    shutil.copyfile(params_file, candidate)
    try:
        try:
            apply_overrides(candidate, sets)
        except InvalidArgumentError as exc:
            raise UserError(f"{' '.join(sets)}: {exc}") from None
        load_params(candidate)  # one clear line naming the key if a value is wrong
        after = current_params(candidate)
        changed = {key: value for key, value in after.items() if before.get(key) != value}
        if changed:
            candidate.replace(params_file)  # whole or not at all
        return changed
    finally:
        candidate.unlink(missing_ok=True)
