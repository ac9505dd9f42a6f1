"""Training curves and metrics the DVC way, with DVCLive's Lightning logger.

DVCLive writes `<dir>/metrics.json` (latest values, plus the stage's summary) and one TSV per
metric under `<dir>/plots/metrics/` (`train/loss_step.tsv`, `val/acc.tsv`, ...), which
`dvc metrics show` and `dvc plots show` read. The logger writes into the resume folder of the
run (beside its checkpoints, not a DVC output), so a killed run's curves survive until it is
resumed; the finished files are then published to `paths.train_live` in one atomic move.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from dvclive.lightning import DVCLiveLogger

from klue_nli.core.io import atomic_dir


def live_logger(folder: Path, resume_step: int | None) -> DVCLiveLogger:
    """A logger writing into `folder`; `resume_step`: the global step of the checkpoint a
    killed run resumes from (None: a fresh run, which starts with empty curves)."""
    if resume_step is not None:
        trim_history(folder / "plots" / "metrics", resume_step)
    return DVCLiveLogger(
        dir=str(folder),
        resume=resume_step is not None,
        # The pipeline's dvc.yaml declares these files; DVCLive must not write its own, nor
        # commit experiments: `dvc exp run` already records the run.
        dvcyaml=None,
        save_dvc_exp=False,
    )


def trim_history(plots_dir: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from (`last_step` steps were done:
    Lightning logged them as steps 0 .. last_step - 1). The resumed run logs the later steps
    again, and DVCLive's own resume knows nothing of checkpoints (it would keep both)."""
    for tsv in plots_dir.rglob("*.tsv"):
        with tsv.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows:
            continue
        step = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[step]) < last_step]
        with tsv.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(kept)


def publish(folder: Path, dest: str | Path) -> None:
    """Move the finished DVCLive folder to `dest` atomically (no half-written curves)."""
    with atomic_dir(dest) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
