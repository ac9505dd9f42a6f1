"""The layer contract ([tool.importlinter] in pyproject.toml) holds, breaks when code crosses a
layer, and the wheel ships the product only.

Which artifact carries which layers is checked where each is built: the logged MLflow model
in test_train_evaluate.py, the Bento in test_service.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("klue_nli", "benchmarks", "devtools", "tests")
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
        "Layers: entry points > registry > inference > model > network > data > core",
    ),
    "service imports mlflow": (
        "klue_nli/service/answers.py",
        "import mlflow",
        "The service imports no MLflow",
    ),
    "inference imports mlflow through the registry": (
        "klue_nli/inference/batching.py",
        "from klue_nli.registry import tracking",
        "The service imports no MLflow",
    ),
    "product imports a test helper": (
        "klue_nli/pipeline/recipes.py",
        "from devtools import sandbox",
        "The product imports no test, benchmark or devtools code",
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


def test_the_wheel_ships_the_product_only(tmp_path):
    src = scratch_copy(tmp_path / "src")  # every package, the non-product ones included
    shutil.copy(ROOT / "README.md", src)  # pyproject.toml's readme
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == {"klue_nli"}, packages
    names = zipfile.ZipFile(wheel).namelist()
    layers = {n.split("/")[1] for n in names if n.count("/") >= 2}
    assert {"core", "data", "network", "model", "inference", "registry"} <= layers
    entry_points = {"cli", "pipeline", "stages", "service"}
    assert entry_points <= layers, layers
    assert "klue_nli/service/static/index.html" in names  # the page the service serves
