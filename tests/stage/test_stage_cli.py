"""A stage run as DVC runs it (`python -m stages.<name>`) with a wrong params value: one error
line naming the key, exit 1, no traceback."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT, defaults
from tests.helpers import deep_update


def test_stage_cli_prints_one_error_line_and_no_traceback(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(deep_update(defaults(), {"train": {"batch_size": -1}})))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.download", "--params", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "download: error: train.batch_size: must be > 0, got -1"
