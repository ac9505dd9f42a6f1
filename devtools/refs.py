"""How a rendered block names a file of the repository: a link on the README (read on the
repository's page), plain code under docs/, whose built site holds the pages and nothing
else (a link there would lead outside the site)."""

from __future__ import annotations


def repo_ref(path: str, up: str) -> str:
    """`path` (from the project's folder) as a page `up` folders below it names it."""
    return f"`{path}`" if up else f"[{path}]({path})"
