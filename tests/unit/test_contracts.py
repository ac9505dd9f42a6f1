"""The layer contract ([tool.importlinter] in pyproject.toml) holds, and breaks when code
crosses a layer or the library imports a face.

Which artifact carries which layers is checked where each is built: the wheel in
tests/stage/test_wheel.py, the logged MLflow model in test_train_evaluate.py, the Bento in
test_service.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PYTHON_FOLDERS as PACKAGES
from tests.conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def scratch_copy(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest)
    return dest


def test_the_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "5 kept, 0 broken" in proc.stdout


# (file, line appended, the contract it must break)
VIOLATIONS = {
    "training imports serving": (
        "klue_nli/model/module.py",
        "from klue_nli.inference import predictor",
        "Training imports no serving code",
    ),
    "core imports data": (
        "klue_nli/core/io.py",
        "from klue_nli.data import text",
        "Layers: the faces over the library, its layers top to bottom",
    ),
    "service imports mlflow": (
        "service/answers.py",
        "import mlflow",
        "The service imports no MLflow",
    ),
    "inference imports mlflow through the registry": (
        "klue_nli/inference/batching.py",
        "from klue_nli.registry import tracking",
        "The service imports no MLflow",
    ),
    "library imports a test helper": (
        "klue_nli/experiments/recipes.py",
        "from devtools import sandbox",
        "The library imports no face, test, benchmark or devtools code",
    ),
    "library imports a flow": (
        "klue_nli/cli/pipeline.py",
        "from flows import training",
        "The library imports no face, test, benchmark or devtools code",
    ),
    "library imports the service": (
        "klue_nli/inference/predictor.py",
        "from service import answers",
        "The library imports no face, test, benchmark or devtools code",
    ),
    "a stage imports serving": (
        "stages/train.py",
        "from service import answers",
        "Training imports no serving code",
    ),
    "a cycle inside a layer": (
        "klue_nli/data/text.py",
        "from klue_nli.data import klue",
        "No import cycles between the modules of a package",
    ),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_a_violation_breaks_the_contract(tmp_path, case):
    """One deliberate violation in a scratch copy: lint-imports fails and names the contract."""
    path, line, contract = VIOLATIONS[case]
    project = scratch_copy(tmp_path)
    with (project / path).open("a", encoding="utf-8") as fh:
        fh.write(f"\n{line}  # deliberate violation\n")
    proc = lint_imports(project)
    assert proc.returncode != 0, proc.stdout[-3000:]
    broken = [ln for ln in proc.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), proc.stdout[-3000:]
