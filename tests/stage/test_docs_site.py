"""`make docs`: the reference pages build as a site with mkdocs --strict, no warning."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_the_docs_site_builds_without_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's notice of its successor
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    assert (tmp_path / "s" / "model" / "index.html").is_file()
