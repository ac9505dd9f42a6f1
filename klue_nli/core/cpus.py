"""How many CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota.

`os.cpu_count()` counts the host's cores. In a container limited to 2 CPUs on a 64-core node
(docs/serving.md, Containers) each serving worker would otherwise start dozens of threads,
and ONNX Runtime copies that count: they contend for the 2 CPUs the quota allows.
Hand-written, not joblib's `cpu_count` (pinned through scikit-learn), which reads the same
files: it rounds a fractional quota up (1.5 CPUs: 2 threads, throttled), and the service's
image ships no joblib.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The file the CPU's model and flags are read from: /proc/cpuinfo, unless this variable names
# another (a container whose /proc hides the host's flags, or a test telling a process that
# its CPU lacks one).
CPUINFO_ENV = "KLUE_NLI_CPUINFO"


def cpuinfo_path() -> Path:
    return Path(os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo")


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by the CPU quota of this process's cgroup (v2 `cpu.max`, v1 CFS), or None
    for no quota."""
    candidates = []
    try:  # cgroup v2: "0::/some/path"; v1 lines name their controllers
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "" or "cpu" in controllers.split(","):
                candidates.append(path.lstrip("/"))
    except OSError:
        pass
    for rel in [*candidates, ""]:
        v2 = root / rel / "cpu.max"
        if v2.is_file():
            fields = v2.read_text().split()  # "<quota> <period>", quota "max" for none
            period = int(fields[1]) if len(fields) > 1 else 100000
            return None if fields[0] == "max" else int(fields[0]) / period
        for v1_dir in (root / "cpu" / rel, root / "cpu,cpuacct" / rel, root / "cpu"):
            quota_file = v1_dir / "cpu.cfs_quota_us"
            if quota_file.is_file():
                quota_us = int(quota_file.read_text())
                period_us = int((v1_dir / "cpu.cfs_period_us").read_text())
                return None if quota_us <= 0 else quota_us / period_us
    return None


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on (sched_getaffinity), at most its cgroup quota
    (rounded down: 1.5 CPUs of quota run 1 thread without throttling), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        count = min(count, int(quota))
    return max(1, count)


def threads_per_worker(workers: int, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Each serving worker's share of the usable CPUs: more threads only fight each other."""
    return max(1, usable_cpus(cgroup_root) // workers)


# The instruction sets that decide which inference variant is fastest (bf16, int8, AMX).
NOTABLE_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)


def cpu_description(cpuinfo: Path | None = None) -> dict:
    """The CPU a figure was measured on: its model name and the notable flags it has."""
    cpuinfo = cpuinfo or cpuinfo_path()
    model, flags = "", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model or platform.processor() or platform.machine(),
        "flags": [flag for flag in NOTABLE_FLAGS if flag in flags],
    }


NATIVE_BF16 = {"avx512_bf16", "amx_bf16"}


def cpu_has_bf16(cpuinfo: Path | None = None) -> bool:
    """The CPU computes bf16 natively (its AVX512-BF16 or AMX-BF16 flag); emulated bf16 is
    slower than fp32. No flags known (not Linux): fp32."""
    return bool(NATIVE_BF16 & set(cpu_description(cpuinfo)["flags"]))
