"""DVC's state as the flow and the sweep read it: `dvc status --json` and the queue's API, on
a real two-file DVC project (no text parsing of what DVC prints for people)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from klue_nli.experiments.dvc_state import queue_busy, stage_changed


@pytest.fixture
def project(tmp_path, monkeypatch):
    for role in ("AUTHOR", "COMMITTER"):  # an identity for git where the machine has none
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@example.invalid")
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
    )
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def test_a_stage_is_changed_until_it_runs_and_again_when_its_input_changes(project):
    assert stage_changed("copy", cwd=project)  # never run
    repro = [sys.executable, "-m", "dvc", "repro", "--single-item", "copy"]
    subprocess.run(repro, cwd=project, check=True, capture_output=True)
    assert not stage_changed("copy", cwd=project)
    (project / "a.txt").write_text("two\n")
    assert stage_changed("copy", cwd=project)


def test_an_empty_queue_is_not_busy(project):
    assert queue_busy(project) == []
