"""The thin `main()` every stage shares: load params, run, print a summary or one error line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from klue_nli.core.errors import UserError
from klue_nli.core.params import PARAMS_FILE, Params, load_params

# Defaults that keep every tool offline-safe and quiet (DVCLive never posts to Studio; no
# tokenizers fork warnings with DataLoader workers); the Makefile exports the same file.
QUIET_ENV = Path(__file__).with_name("quiet.env")


def quiet_defaults() -> dict[str, str]:
    """quiet.env's variables and values (python-dotenv reads it, as .env files are read)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(QUIET_ENV).items() if v is not None}


def apply_quiet_defaults() -> None:
    """quiet.env into this process's environment; a variable the user set keeps its value."""
    for key, value in quiet_defaults().items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def scoped_env(name: str, value: str) -> Iterator[None]:
    """An environment variable set for a while (for this process and what it starts
    meanwhile), then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def require_command(name: str, prog: str) -> str:
    """The path of the program `name` on PATH; else one error line naming it, and exit 1
    (a traceback from deep inside subprocess says less)."""
    path = shutil.which(name)
    if path is None:
        print(
            f"{prog}: error: `{name}` is not on PATH; `make venv` installs it into .venv/bin "
            "(activate it with `source .venv/bin/activate`)",
            file=sys.stderr,
        )
        raise SystemExit(1)
    return path


def run_stage(stage: Callable[[Params], dict[str, Any]], argv: list[str] | None = None) -> None:
    name = stage.__name__
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=stage.__doc__)
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    apply_quiet_defaults()
    try:
        summary = stage(load_params(args.params))
    except UserError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no output was written", file=sys.stderr)
        raise SystemExit(130) from None
    if summary is not None:
        print(f"{name}: " + json.dumps(summary, ensure_ascii=False, sort_keys=True))
