"""The wheel holds the library `klue_nli` alone, and the library works installed outside a
checkout: built here, installed into a fresh virtual environment, run from a folder that is
not the project's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PYTHON_FOLDERS, ROOT

IMPORT_ALL = """
import importlib, pkgutil, sys
import klue_nli
names = [m.name for m in pkgutil.walk_packages(klue_nli.__path__, "klue_nli.")
         if not m.name.endswith(".__main__")]  # that one runs the CLI
for name in names:
    importlib.import_module(name)
for face in ("stages", "flows", "service"):
    try:
        importlib.import_module(face)
    except ModuleNotFoundError:
        continue
    sys.exit(f"{face} is importable outside the checkout")
print("IMPORTED", klue_nli.__file__, len(names))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the project that holds every package, faces included."""
    src = tmp_path_factory.mktemp("src")
    for name in PYTHON_FOLDERS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = dist.glob("*.whl")
    return built


def test_the_wheel_holds_the_library_alone(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"klue_nli"}, tops
    layers = {n.split("/")[1] for n in names if n.count("/") >= 2}
    library = {"core", "data", "network", "model", "inference", "registry", "experiments"}
    assert library | {"monitoring", "cli"} <= layers, layers
    assert not layers & {"stages", "flows", "service", "pipeline"}, layers
    assert "klue_nli/core/quiet.env" in names


def fresh_venv(where: Path) -> Path:
    """A new virtual environment whose only project package is the wheel's: the pinned
    third-party packages this suite runs on join it as a path (a .pth line), which adds
    their folder but runs none of its .pth files, so the checkout's editable install stays
    out."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "pinned-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_the_library_works_installed_outside_a_checkout(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"  # no params.yaml, no checkout
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )

    cli = str(tmp_path / "venv" / "bin" / "klue-nli")
    version = run(cli, "--version")
    assert version.returncode == 0 and "klue-nli, version" in version.stdout, version
    usage = run(cli, "--help")
    assert usage.returncode == 0 and "recipe" in usage.stdout, usage
    imported = run(str(python), "-c", IMPORT_ALL)
    assert imported.returncode == 0, imported.stderr[-3000:]
    [line] = [ln for ln in imported.stdout.splitlines() if ln.startswith("IMPORTED ")]
    _, where, count = line.split()
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's copy, not the checkout
    assert int(count) >= 50
    # a command that needs the project folder says so in one line, naming the folder
    refused = run(cli, "recipe", "demo")
    assert refused.returncode == 1, refused
    assert refused.stderr.strip().splitlines() == [
        f"klue-nli: error: {elsewhere.resolve()} is not a project folder (no params.yaml): "
        "run this from the folder that holds params.yaml and dvc.yaml"
    ]
