"""train.precision `auto`: what the hardware computes natively."""

from __future__ import annotations

from pathlib import Path

import torch

from klue_nli.core.cpus import CPUINFO, cpu_description
from klue_nli.core.params import TrainParams

NATIVE_BF16 = {"avx512_bf16", "amx_bf16"}


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


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """The CPU computes bf16 natively (its AVX512-BF16 or AMX-BF16 flag); emulated bf16 is
    slower than fp32. No flags known (not Linux): fp32."""
    return bool(NATIVE_BF16 & set(cpu_description(cpuinfo)["flags"]))
