"""Every third-party module the project imports comes from a distribution that pyproject.toml
declares (a transitive install that happens to be there today can vanish with any upgrade)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

from tests.conftest import PYTHON_FOLDERS as FOLDERS
from tests.conftest import ROOT

OWN = set(FOLDERS)


def imported_top_level() -> dict[str, str]:
    """{top-level module: a file importing it} over the project's Python files."""
    found: dict[str, str] = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        d for ds in project["optional-dependencies"].values() for d in ds
    ]
    return {normalise(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in specs}


def bento_packages() -> list[str]:
    """The pip requirements bentofile.yaml gives the Bento."""
    import yaml

    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]


def test_every_imported_distribution_is_declared():
    providers = importlib.metadata.packages_distributions()
    wanted = declared()
    missing = {}
    for module, where in imported_top_level().items():
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {normalise(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported in {where}) comes from no installed distribution"
        if not dists & wanted:
            missing[module] = (sorted(dists), where)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_check_sees_third_party_imports():
    modules = imported_top_level()
    assert {"torch", "mlflow", "bentoml", "yaml"} <= set(modules)


def test_the_service_imports_no_mlflow(tmp_path):
    """The registry, not the service, talks to MLflow: the Bento needs no MLflow at all."""
    import subprocess

    code = "import sys, service.service; print(sorted(m for m in sys.modules if 'mlflow' in m))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
    assert not [p for p in bento_packages() if "mlflow" in p.lower()]


def test_plotting_and_process_tools_are_not_runtime_dependencies():
    """`dvc plots` draws the confusion matrix from plots/confusion.csv: the product needs no
    matplotlib; psutil measures servers for the soak and the tests. Both are dev-only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    assert not {"matplotlib", "psutil"} & {normalise(n) for n in names}
    first_importer = imported_top_level()  # product folders are walked first
    for module in ("matplotlib", "psutil"):
        where = first_importer.get(module, "")
        assert not where.startswith("klue_nli"), where


def test_the_service_server_runs_on_the_c_event_loop_and_parser():
    """uvicorn picks uvloop and httptools where they are installed (asyncio and h11 in Python
    otherwise, a larger share of every request's time); the install and the Bento have both."""
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    loop = auto_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop"), type(loop)
    finally:
        loop.close()
    assert AutoHTTPProtocol.__name__ == "HttpToolsProtocol"
    packages = {re.split(r"[=<>]", p, maxsplit=1)[0] for p in bento_packages()}
    assert {"uvloop", "httptools"} <= packages


def _closure(names: set[str]) -> set[str]:
    """The distributions these pull in when installed (their requirements without extras)."""
    seen: set[str] = set()
    todo = [normalise(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            specs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:  # under a marker this Python fails
            continue
        for spec in specs:
            if "extra ==" not in spec:  # an extra's requirement is not installed with it
                todo.append(normalise(re.split(r"[<>=!~\[; (]", spec, maxsplit=1)[0]))
    return seen


def bento_included_files() -> list:
    """The Python files bentofile.yaml's include patterns put in the Bento."""
    import yaml

    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())

    def paths(patterns: list[str]) -> set:
        # "dir/**" names everything below dir (glob alone would give its folders only)
        globs = [p + "/*" if p.endswith("**") else p for p in patterns]
        return {p for pattern in globs for p in ROOT.glob(pattern) if p.suffix == ".py"}

    return sorted(paths(bentofile["include"]) - paths(bentofile["exclude"]))


def module_level_imports(tree: ast.Module) -> set[str]:
    """Top-level modules a file imports when it is imported (not those a function imports
    when called: the training-only imports of the included library files)."""
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        todo.extend(ast.iter_child_nodes(node))
    return found - OWN - set(sys.stdlib_module_names) - {"__future__"}


def all_imports(path) -> set[str]:
    """Third-party top-level modules a file imports anywhere (in its functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - OWN - set(sys.stdlib_module_names) - {"__future__"}


def test_every_module_the_bento_imports_comes_with_its_packages():
    """The container installs only bentofile.yaml's packages (and what they require): a module
    an included file imports from anything else stops the service from starting in the image."""
    providers = importlib.metadata.packages_distributions()
    packages = {re.split(r"[=<>\[ ]", p, maxsplit=1)[0] for p in bento_packages()}
    installed = _closure(packages)
    files = bento_included_files()
    assert any(p.name == "service.py" for p in files) and len(files) > 20
    missing = {}
    for path in files:
        for module in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not {normalise(d) for d in providers.get(module, [])} & installed:
                missing[module] = str(path.relative_to(ROOT))
    assert not missing, f"the Bento's files import, bentofile.yaml's packages lack: {missing}"


def test_the_bento_check_reads_only_what_runs_at_import():
    tree = ast.parse("import numpy\nif True:\n    import yaml\ndef f():\n    import scipy\n")
    assert module_level_imports(tree) == {"numpy", "yaml"}
