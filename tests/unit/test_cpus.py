"""Serving threads come from the CPUs the process may use (klue_nli/core/cpus.py), not
the host's core count; and an ONNX Runtime predictor holds the model once (no PyTorch copy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from klue_nli.core.cpus import cpu_description, cpu_has_bf16, threads_per_worker, usable_cpus
from tests.conftest import ROOT


def run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to restrict to 1")
def test_a_restricted_affinity_gives_one_thread_per_worker():
    """In a subprocess pinned to one CPU (as taskset or a cpuset does), the host still counts
    all its cores, but the service's share is one thread."""
    out = run_python(
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from klue_nli.core.cpus import usable_cpus, threads_per_worker; "
        "print(os.cpu_count(), usable_cpus(), threads_per_worker(1), threads_per_worker(2))"
    )
    host, usable, one_worker, two_workers = map(int, out.split())
    assert host >= 2 and usable == 1 and one_worker == 1 and two_workers == 1


def cgroup(root: Path, v2: str | None = None, v1: tuple[int, int] | None = None) -> Path:
    if v2 is not None:
        root.mkdir(parents=True)
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        folder = root / "cpu"
        folder.mkdir(parents=True)
        (folder / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (folder / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return root


def test_a_cgroup_cpu_quota_caps_the_count(tmp_path):
    mine = len(os.sched_getaffinity(0))
    assert usable_cpus(cgroup(tmp_path / "a", v2="100000 100000")) == 1  # 1 CPU of quota
    assert usable_cpus(cgroup(tmp_path / "b", v2="150000 100000")) == 1  # 1.5 -> 1
    assert usable_cpus(cgroup(tmp_path / "c", v2="max 100000")) == mine  # no quota
    assert usable_cpus(cgroup(tmp_path / "d", v1=(50000, 100000))) == 1  # half a CPU -> 1
    assert usable_cpus(cgroup(tmp_path / "e", v1=(-1, 100000))) == mine  # v1 "no limit"
    assert usable_cpus(tmp_path / "none") == mine  # no cgroup files: the affinity alone
    sixteen = cgroup(tmp_path / "f", v2="800000 50000")  # 16 CPUs of quota, period 50 ms
    assert threads_per_worker(2, sixteen) == max(1, mine // 2)
    assert usable_cpus(cgroup(tmp_path / "g", v2="100000 50000")) == min(2, mine)


def test_an_onnx_runtime_predictor_keeps_no_pytorch_model(model_dir):
    """Only what serves stays in memory: after loading for ONNX Runtime no transformers model
    object is alive (it held every weight a second time: about 400 MB at e5-small's size)."""
    out = run_python(
        "import gc, sys; from transformers import PreTrainedModel; "
        "from klue_nli.inference.predictor import Predictor; "
        f"p = Predictor.from_dir({str(model_dir)!r}, device='cpu', runtime='onnxruntime'); "
        "p.predict_proba(['비가 온다.'], ['비가 온다.']); gc.collect(); "
        "alive = [o for o in gc.get_objects() if isinstance(o, PreTrainedModel)]; "
        "print(len(alive), p.model is None)"
    )
    assert out == "0 True"


def test_the_cpu_a_figure_holds_on_is_named_with_its_notable_flags(tmp_path):
    from klue_nli.core.cpus import cpu_description

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    )
    assert cpu_description(info) == {
        "model": "AMD EPYC 9B45",
        "flags": ["avx2", "avx512f", "avx512_bf16"],
    }
    assert cpu_description(tmp_path / "absent")["flags"] == []


def test_bf16_is_auto_only_where_the_cpu_computes_it_natively(tmp_path):
    from klue_nli.core.cpus import cpu_has_bf16

    def cpuinfo(flags: str):
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: fpu {flags}\n")
        return path

    assert cpu_has_bf16(cpuinfo("avx2 avx512f avx512_bf16"))
    assert cpu_has_bf16(cpuinfo("avx2 avx512f amx_tile amx_bf16"))
    assert not cpu_has_bf16(cpuinfo("avx2 avx512f"))  # bf16 emulated: slower than fp32
    assert not cpu_has_bf16(tmp_path / "absent")


def test_a_process_can_be_told_its_cpus_flags(tmp_path, monkeypatch):
    """KLUE_NLI_CPUINFO names the file read instead of /proc/cpuinfo; a model measured in
    bf16 is then refused on a CPU without it, in one line."""
    from klue_nli.core.errors import UserError
    from klue_nli.inference.predictor import require_native

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: told\nflags\t\t: avx2 avx512f\n")
    monkeypatch.setenv("KLUE_NLI_CPUINFO", str(info))
    assert cpu_description() == {"model": "told", "flags": ["avx2", "avx512f"]}
    assert not cpu_has_bf16()
    require_native("openvino", "none")  # fp32 runs anywhere
    with pytest.raises(UserError, match="measured as openvino bf16, and this CPU computes no"):
        require_native("openvino", "bf16")
    info.write_text("model name\t: told\nflags\t\t: avx2 avx512f amx_bf16\n")
    require_native("openvino", "bf16")
