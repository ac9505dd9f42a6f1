"""The one seam into BentoML's internals (service/respawn.py): the arbiter `bentoml serve`
builds checks its workers every second, and a BentoML that moved it fails loudly, naming the
versions. Each case in a fresh interpreter: the seam changes a class for the process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def python(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "probe.py"  # a file, so that its functions have source to inspect
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_arbiters_bentoml_builds_check_every_second(tmp_path):
    proc = python(
        "from service.respawn import prompt_respawn\n"
        "from bentoml._internal.utils.circus import create_standalone_arbiter as make\n"
        "before = make([]).check_delay\n"
        "prompt_respawn(); prompt_respawn()\n"
        "print(before, make([]).check_delay, make([], threaded=True).check_delay)\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["10", "1.0", "1.0"]


def test_a_bentoml_that_moved_the_arbiter_fails_naming_the_versions(tmp_path):
    proc = python(
        "from bentoml._internal.utils import circus\n"
        "def create_standalone_arbiter(watchers, **kwargs): return None\n"
        "circus.create_standalone_arbiter = create_standalone_arbiter\n"
        "from service.respawn import prompt_respawn\n"
        "prompt_respawn()\n",
        tmp_path,
    )
    assert proc.returncode == 1
    pinned = "BentoML 1.4.39 (the project pins 1.4.39)"
    assert f"RuntimeError: klue-nli service: {pinned}" in proc.stderr
    assert "no longer takes check_delay" in proc.stderr
