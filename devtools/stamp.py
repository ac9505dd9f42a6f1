"""What a run's file says about the run: when, at which commit, on which CPU. The benchmarks'
and the dev targets' files carry it, so a page that renders a figure can say where it holds."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from typing import Any

from klue_nli.core.cpus import cpu_description


def run_stamp() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "cpu": cpu_description(),
        "cores": os.cpu_count(),
    }
