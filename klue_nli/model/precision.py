"""train.precision `auto`: what the hardware computes natively."""

from __future__ import annotations

import torch

from klue_nli.core.cpus import cpu_has_bf16
from klue_nli.core.params import TrainParams


def resolve_precision(train: TrainParams) -> str:
    """`auto`: bf16-mixed where the hardware computes bf16 (a GPU that has it, a CPU with
    AVX512-BF16 or AMX: about twice fp32's examples/s on 2 Zen 5 cores, docs/model.md),
    else 32-true."""
    if train.precision != "auto":
        return train.precision
    if train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if train.accelerator in ("auto", "cpu") and cpu_has_bf16():
        return "bf16-mixed"
    return "32-true"
