"""Library messages a training run should not print: each says nothing about this run.

- Lightning's tip to install its cloud logger (printed at every `Trainer`);
- torch's deprecation of `LeafSpec`, raised from Lightning's own code at every `fit`;
- transformers' "LOAD REPORT" of the newly built classifier head: `model/modeling.py`
  checks the missing keys itself and stops when an encoder weight is among them.

Installed by the stage that trains (never at import), and only these messages.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

LIGHTNING_LOGGER = "pytorch_lightning.utilities.rank_zero"
TRANSFORMERS_LOGGER = "transformers.modeling_utils"


class _Drop(logging.Filter):
    """Drops the records whose message contains `marker`."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def filter(self, record: logging.LogRecord) -> bool:
        return self.marker not in record.getMessage()


_TIP = _Drop("Tip: For seamless")


def quiet_lightning() -> None:
    """Lightning's cloud tips and torch's LeafSpec deprecation off (idempotent)."""
    log = logging.getLogger(LIGHTNING_LOGGER)
    if _TIP not in log.filters:
        log.addFilter(_TIP)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )


@contextlib.contextmanager
def without_load_report() -> Iterator[None]:
    """transformers' load report off while a checkpoint loads (the caller checks the keys)."""
    log = logging.getLogger(TRANSFORMERS_LOGGER)
    report = _Drop("LOAD REPORT")
    log.addFilter(report)
    try:
        yield
    finally:
        log.removeFilter(report)
