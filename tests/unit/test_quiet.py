"""Training prints nothing about the libraries themselves: Lightning's cloud tip, torch's
LeafSpec deprecation and transformers' load report of the new classifier head are gone,
and each assertion is first seen to fail without the filter (so it tests the filter)."""

from __future__ import annotations

import logging
import warnings

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from transformers import BertConfig, BertForPreTraining

from klue_nli.model import quiet
from klue_nli.model.modeling import _load_pretrained

TIP = "Tip: For seamless"


def _trainer_output(tmp_path, caplog) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=quiet.LIGHTNING_LOGGER):
        pl.Trainer(logger=CSVLogger(tmp_path), enable_progress_bar=False, max_epochs=1)
    return caplog.text


def test_lightnings_cloud_tip_is_dropped_and_other_lines_are_kept(tmp_path, caplog):
    log = logging.getLogger(quiet.LIGHTNING_LOGGER)
    log.removeFilter(quiet._TIP)
    before = _trainer_output(tmp_path, caplog)
    assert TIP in before  # Lightning prints it: the check below can fail
    try:
        quiet.quiet_lightning()
        quiet.quiet_lightning()  # twice: one filter
        assert log.filters.count(quiet._TIP) == 1
        after = _trainer_output(tmp_path, caplog)
    finally:
        log.removeFilter(quiet._TIP)
    assert TIP not in after
    assert "GPU available" in after  # Lightning's own facts still shown


def test_the_leafspec_deprecation_is_ignored_and_only_it(recwarn):
    from torch.utils._pytree import LeafSpec

    with warnings.catch_warnings():
        quiet.quiet_lightning()
        LeafSpec()
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in recwarn]
    assert messages == ["another FutureWarning"]


def test_the_load_report_of_a_new_head_is_not_printed(tmp_path, caplog):
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    BertForPreTraining(config).save_pretrained(tmp_path)
    labels = {0: "entailment", 1: "contradiction", 2: "neutral"}
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert "LOAD REPORT" in caplog.text  # transformers logs it unfiltered
    caplog.clear()
    _load_pretrained(str(tmp_path), labels, {v: k for k, v in labels.items()})
    assert "LOAD REPORT" not in caplog.text
    assert not logging.getLogger(quiet.TRANSFORMERS_LOGGER).filters  # removed after the load
