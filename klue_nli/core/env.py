"""The process environment the tools run in: the quiet, offline-safe defaults of quiet.env,
a variable set for a while, and the programs the pipeline calls on PATH."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from klue_nli.core.errors import UserError

# Defaults that keep every tool offline-safe and quiet (DVCLive never posts to Studio; no
# tokenizers fork warnings with DataLoader workers); the Makefile exports the same file.
QUIET_ENV = Path(__file__).with_name("quiet.env")
# The team's alert webhook URL, for `klue-nli monitor --webhook` and `deploy --alert-webhook`:
# a chat webhook's URL is its secret, and a command line is visible to every local user.
WEBHOOK_ENV = "KLUE_NLI_ALERT_WEBHOOK"


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


# The variables that name local stand-ins for the downloads and the Hub (README, offline use)
SOURCE_VARIABLES = ("KLUE_NLI_MIRROR", "KORNLI_MIRROR", "KLUE_NLI_FULL_MIRROR", "KCBERT_DIR")


def local_source(value: str) -> str:
    """A stand-in as given (a URL, a Hub id), or, when it names an existing local path, that
    path made absolute against the working directory: `KORNLI_MIRROR=../shared/kornli-xnli`
    then means the same folder to every command, whatever folder it runs in."""
    if not value or "://" in value or not Path(value).exists():
        return value
    return str(Path(value).resolve())


def absolute_sources(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with each of SOURCE_VARIABLES that names a local path made absolute."""
    return {k: local_source(v) if k in SOURCE_VARIABLES and v else v for k, v in environ.items()}


def require_command(name: str) -> str:
    """The path of the program `name` on PATH, else a UserError naming it (a traceback from
    deep inside subprocess says less)."""
    path = shutil.which(name)
    if path is None:
        raise UserError(
            f"`{name}` is not on PATH: install the project's dependencies (`make venv` in a "
            "checkout) and activate that environment"
        )
    return path
