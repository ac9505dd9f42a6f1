"""`klue-nli`, the one command-line tool: every command listed with one line, the Makefile
calling it, and one line with exit 2 for bad arguments (exit 1 for a problem to fix)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = Path(sys.executable).parent / "klue-nli"  # what `make venv` installs
COMMANDS = {
    "recipe", "sweep", "flow", "deploy",
    "register", "promote", "rollback", "show", "export", "gc",
    "feedback", "monitor",
    "params", "convert-e5",
}  # fmt: skip


def klue_nli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command_with_one_line():
    proc = klue_nli("--help")
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  ([a-z0-9-]+)\s{2,}\S.*$", proc.stdout.split("Commands:")[1], re.M)
    assert set(listed) == COMMANDS, proc.stdout
    for command in COMMANDS:  # and each command has its own help
        assert klue_nli(command, "--help").returncode == 0


def test_bare_klue_nli_prints_its_usage_and_version_is_the_package_version():
    from importlib.metadata import version

    bare = klue_nli()
    assert (bare.returncode, bare.stderr) == (0, "")
    assert bare.stdout.startswith("Usage: klue-nli") and "Commands:" in bare.stdout
    shown = klue_nli("--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"klue-nli, version {version('klue-nli-pipeline')}"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nosuch"], 2, "klue-nli: error: No such command 'nosuch'."),
        (["promote", "--bogus"], 2, "klue-nli promote: error: No such option '--bogus'"),
        (["sweep", "--dry-run", "extra"], 2, "klue-nli sweep: error: Got unexpected extra"),
        (["deploy", "--params", "{"], 2, "klue-nli deploy: error: Invalid value for --params"),
        (["params", "--params", "missing.yaml"], 1, "klue-nli: error: missing.yaml: file not"),
        (["recipe", "nosuch"], 1, "klue-nli: error: unknown recipe 'nosuch' (one of "),
        (["recipe", "demo", "--set", "train.epochs"], 1, "klue-nli: error: --set 'train.epochs'"),
    ],
)
def test_bad_arguments_are_one_line(args, code, message):
    proc = klue_nli(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


def test_the_makefile_calls_it_and_only_the_stages_run_as_scripts():
    """The Makefile calls `klue-nli`; the library has no module run as a script but its CLI,
    and the DVC stages are the top-level stages/ (dvc.yaml runs `python -m stages.<stage>`)."""
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "quick", "sweep", "run", "register", "promote", "export", "flow"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe and "klue-nli " in recipe.group(1), target
    assert "python -m klue_nli" not in makefile
    scripts = {
        p.relative_to(ROOT).as_posix()
        for folder in ("klue_nli", "stages")
        for p in (ROOT / folder).rglob("*.py")
        if "__main__" in p.read_text()
    }
    stages = {f"stages/{s}.py" for s in ("download", "featurize", "train", "evaluate")}
    assert scripts == stages, scripts


def test_the_flows_are_named_once_and_load_from_their_entrypoints(monkeypatch):
    """`klue-nli flow` and `deploy` load the flows from the project folder by the entrypoints
    flows/deploy.py names, which prefect.yaml's deployment uses too."""
    import yaml

    from klue_nli.cli.pipeline import DEPLOY_MODULE, load_flow, load_module

    monkeypatch.chdir(ROOT)
    deploy = load_module(DEPLOY_MODULE)
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert [d["entrypoint"] for d in prefect["deployments"]] == [deploy.TRAINING]
    assert load_flow(deploy.TRAINING).name == deploy.TRAINING_FLOW_NAME
    assert load_flow(deploy.MONITOR).name == "klue-nli-monitor"


def test_flows_that_cannot_be_loaded_are_one_line(tmp_path):
    """`klue-nli flow` in a folder without the flows, or with a flow file that fails to run:
    one line naming the file, exit 1."""
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path)

    def flow() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), "flow"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    missing = flow()
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"klue-nli: error: {tmp_path / 'flows/deploy.py'}: not found; the project folder "
        "holds the flows (flows/deploy.py)"
    ]
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "deploy.py").write_text("import a_module_nobody_installed\n")
    broken = flow()
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines() == [
        f"klue-nli: error: {tmp_path / 'flows/deploy.py'}: could not be loaded "
        "(ModuleNotFoundError: No module named 'a_module_nobody_installed')"
    ]
