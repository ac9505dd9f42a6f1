"""CHANGELOG.md in the Keep a Changelog form, and the package's version is its newest
release: a release written without raising the version (or the other way round) fails here."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT

KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security", "Measured"}
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$")


def headings() -> list[str]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("## ") or line.startswith("### ")]


def test_unreleased_first_then_dated_versions_newest_first_with_known_kinds():
    lines = headings()
    assert lines[0] == "## [Unreleased]"
    releases = [RELEASE.match(line) for line in lines if line.startswith("## ")][1:]
    assert all(releases), [line for line in lines if line.startswith("## ")]
    versions = [tuple(int(n) for n in m.group(1).split(".")) for m in releases]
    dates = [m.group(2) for m in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert dates == sorted(dates, reverse=True)
    kinds = {line.removeprefix("### ") for line in lines if line.startswith("### ")}
    assert kinds <= KINDS, kinds - KINDS


def test_the_package_version_is_the_newest_release():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    newest = next(RELEASE.match(line) for line in headings() if RELEASE.match(line))
    assert project["version"] == newest.group(1)
