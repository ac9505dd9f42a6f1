"""Passwords in the strings users give (URLs, libpq connection strings): found and hidden by
the parser that reads them, so a value can be shown, logged or refused without its secret."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# a password in a query string (?password=...) or a libpq connection string (password=...)
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|sslpassword|token|access_token|secret|api_key)=)[^&#;]*"
)
_KEYWORD_SECRET = re.compile(r"(?i)\b(password|passwd|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def hide_password(value: str) -> str:
    """`value` with its password shown as `***`: a URL's (parsed by SQLAlchemy's URL grammar,
    which reads a password holding `/`, `#` or `?`), one in a query string, and a libpq
    `password=`. Anything else is returned as it is."""
    if "://" in value:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads (a bad port, say)
            url = None
        if url is not None and url.password:
            value = url.render_as_string(hide_password=True)
    value = _QUERY_SECRET.sub(r"\1***", value)
    return _KEYWORD_SECRET.sub(r"\1=***", value)


def holds_password(value: str) -> bool:
    return hide_password(value) != value
