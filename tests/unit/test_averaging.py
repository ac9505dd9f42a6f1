"""train.swa_from: the weights validated, checkpointed and kept at the end are the equal-weight
mean of the weights after each step of the schedule's tail, and nothing before the tail
starts sees an average; train.ema_decay and train.swa_from are not both set."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from klue_nli.core.errors import ParamsError
from klue_nli.model.module import TailAverage
from tests.conftest import default_params

STEPS = 8


class Linear(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 3)
        self.seen: list[torch.Tensor] = []  # the weight each validation saw

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        self.seen.append(self.layer.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class Record(pl.Callback):
    """The weight after each optimiser step, as the model was trained (before any swap)."""

    def __init__(self) -> None:
        self.after_step: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.after_step.append(pl_module.layer.weight.detach().clone())


def loader() -> torch.utils.data.DataLoader:
    torch.manual_seed(1)
    data = torch.utils.data.TensorDataset(
        torch.randn(STEPS * 2, 4), torch.randint(0, 3, (STEPS * 2,))
    )
    return torch.utils.data.DataLoader(data, batch_size=2)


def train_params(**train):
    return default_params(train=train).train


def fit(callbacks: list[pl.Callback], module: Linear, epochs: int = 1) -> None:
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    trainer.fit(module, loader(), loader())


def test_the_kept_weights_are_the_mean_of_the_tails_steps():
    record, module = Record(), Linear()
    fit([record, TailAverage(0.75, train_params(swa_from=0.75, max_steps=-1))], module)
    assert len(record.after_step) == STEPS
    tail = torch.stack(record.after_step[6:]).mean(0)  # steps 7 and 8 of 8
    torch.testing.assert_close(module.layer.weight.detach(), tail)
    torch.testing.assert_close(module.seen[-1], tail)  # what validation saw
    assert not torch.allclose(tail, record.after_step[-1])  # the mean is not the last step


def test_before_the_tail_validation_sees_the_trained_weights_not_the_starting_ones():
    record, module = Record(), Linear()
    start = module.layer.weight.detach().clone()
    # two epochs of 8 steps, the tail from step 12: the first epoch's validation comes first
    fit([record, TailAverage(0.75, train_params(swa_from=0.75, max_steps=-1))], module, epochs=2)
    torch.testing.assert_close(module.seen[0], record.after_step[STEPS - 1])
    assert not torch.allclose(module.seen[0], start)
    torch.testing.assert_close(module.seen[1], torch.stack(record.after_step[12:]).mean(0))


def test_the_tail_follows_train_max_steps():
    averaged = TailAverage(0.5, train_params(swa_from=0.5, max_steps=4))
    fit([averaged], Linear())
    assert averaged.start_step == 2  # half of the 4 steps the schedule runs, not of 8


def test_two_averages_at_once_are_refused_naming_the_key():
    with pytest.raises(ParamsError, match=r"^train.swa_from: .*ema_decay"):
        train_params(ema_decay=0.99, swa_from=0.75)
