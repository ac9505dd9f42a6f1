"""dvc.yaml lists, for each stage, every project module the stage imports, directly or not:
otherwise editing that module leaves the stage's outputs "up to date" while stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PACKAGES = ("klue_nli", "benchmarks", "devtools")
# Logged with the model by train, not imported: a dep although no import reaches it.
NOT_IMPORTED = {"klue_nli/registry/mlflow_model.py"}


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules imported anywhere in the file (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES and module_file(n) is not None}


def closure(module: str) -> set[str]:
    """Files of `module` and of every project module it imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        rel = path.relative_to(ROOT).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        todo += imported_modules(path)
    return {f for f in seen if not f.endswith("__init__.py") or has_code(ROOT / f)}


def has_code(path: Path) -> bool:
    """A package's __init__ matters only if it does more than hold a docstring."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_depends_on_every_module_it_imports(name):
    stage = stages()[name]
    module = re.fullmatch(r"python -m (\S+)", stage["cmd"]).group(1)
    needed = closure(module)
    assert "klue_nli/core/params.py" in needed  # the walk follows imports at all
    missing = sorted(needed - set(stage["deps"]))
    assert not missing, f"dvc.yaml stage {name!r} misses deps {missing}"
    # and no more: a module the stage does not run would rerun it for nothing
    modules = {d for d in stage["deps"] if d.endswith(".py")}
    extra = sorted(modules - needed - NOT_IMPORTED)
    assert not extra, f"dvc.yaml stage {name!r} depends on modules it does not import: {extra}"


def test_the_import_walk_sees_indirect_imports():
    # evaluate imports the predictor, which imports the encoding: an indirect dependency
    assert "klue_nli/data/encoding.py" in closure("stages.evaluate")
    assert "klue_nli/data/encoding.py" not in imported_modules(ROOT / "stages/evaluate.py")


def test_featurize_depends_on_the_train_files_only_and_evaluate_on_both():
    """Dev is evaluate's alone: the raw files featurize depends on are KLUE's train file and
    KorNLI's XNLI dev file (training pairs when data.kornli.add_dev_to_train), named as
    klue_nli/data/ names them (dvc.yaml cannot import it); never KLUE's dev or XNLI test."""
    from klue_nli.data.klue import split_filename
    from klue_nli.data.kornli import kornli_filename

    raw = "${paths.raw_dir}"
    files = [dep for dep in stages()["featurize"]["deps"] if dep.startswith(raw)]
    assert files == [f"{raw}/{split_filename('train')}", f"{raw}/{kornli_filename('dev')}"]
    assert raw in stages()["evaluate"]["deps"]  # dev, and train for the hypothesis-only baseline
