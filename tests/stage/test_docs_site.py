"""`make docs`: the reference pages build as a site with mkdocs --strict, no warning, and a
link that leads out of the site (to a file of the repository outside docs/) fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's notice of its successor
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_docs_site_builds_without_warnings(tmp_path):
    proc = build(ROOT, tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    assert (tmp_path / "s" / "model" / "index.html").is_file()


def test_a_link_leading_out_of_the_site_fails_the_build(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "start.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n[the record](../metrics/x.json)\n")
    proc = build(tmp_path, tmp_path / "s")
    assert proc.returncode != 0 and "../metrics/x.json" in proc.stderr, proc.stderr
