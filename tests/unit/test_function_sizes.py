"""The product reads as short functions: a stage is a few named steps (at most 40 lines), and
no function of the product is over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PRODUCT = ("klue_nli", "stages", "flows", "service")  # the library and its faces
STAGES = Path("stages")
STAGE_LIMIT, LIMIT = 40, 60


def functions(root: Path):
    paths = sorted(p for folder in PRODUCT for p in (root / folder).rglob("*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                yield path.relative_to(root), node.name, lines


def too_long(root: Path) -> list[str]:
    found = []
    for path, name, lines in functions(root):
        limit = STAGE_LIMIT if path.parent == STAGES else LIMIT
        if lines > limit:
            found.append(f"{path}:{name} has {lines} lines (at most {limit})")
    return found


def test_no_product_function_is_long():
    assert too_long(ROOT) == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(41))
    (tmp_path / STAGES).mkdir(parents=True)
    (tmp_path / STAGES / "long.py").write_text(f"def stage():\n{body}\n")
    assert too_long(tmp_path) == ["stages/long.py:stage has 42 lines (at most 40)"]
