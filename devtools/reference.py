"""docs/reference.md's generated blocks: every `klue-nli` command's help as the command line
prints it, and every Make target with its help line, from the Makefile itself. `make figures`
rewrites them; tests/unit/test_docs.py fails when the page and the tool disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from klue_nli.cli import cli
from klue_nli.core.io import atomic_write_text

PAGE = "docs/reference.md"
CLI_MARKS = ("<!-- cli:start -->\n", "<!-- cli:end -->")
MAKE_MARKS = ("<!-- make:start -->\n", "<!-- make:end -->")
TARGET = re.compile(r"^([a-zA-Z0-9_-]+):.*?## (.*)$")


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path below `group`, in the order `--help` lists them."""
    out = [path]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            out += commands(command, (*path, name))
        else:
            out.append((*path, name))
    return out


def render_cli() -> str:
    runner = CliRunner()
    parts = []
    for path in commands():
        shown = runner.invoke(cli, [*path, "--help"], prog_name="klue-nli", terminal_width=100)
        title = " ".join(("klue-nli", *path))
        parts.append(f"### {title}\n\n```text\n{shown.output.rstrip()}\n```\n")
    return "\n".join(parts)


def render_make(makefile: Path = Path("Makefile")) -> str:
    rows = [
        f"| `make {m.group(1)}` | {m.group(2).replace('|', '/')} |\n"
        for line in makefile.read_text(encoding="utf-8").splitlines()
        if (m := TARGET.match(line))
    ]
    return "| target | what it does |\n|---|---|\n" + "".join(rows)


def _replace(text: str, marks: tuple[str, str], block: str) -> str:
    head, rest = text.split(marks[0], 1)
    _, tail = rest.split(marks[1], 1)
    return head + marks[0] + block + marks[1] + tail


def write_pages(root: Path = Path()) -> list[str]:
    text = (root / PAGE).read_text(encoding="utf-8")
    text = _replace(text, CLI_MARKS, render_cli())
    text = _replace(text, MAKE_MARKS, render_make(root / "Makefile"))
    atomic_write_text(root / PAGE, text)
    return [PAGE]
