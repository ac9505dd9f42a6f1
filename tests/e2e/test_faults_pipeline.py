"""Kill tests under real DVC: SIGKILL `dvc repro` while featurize is writing its cache and
while train is mid-epoch; the next `dvc repro` completes (train resumes from its checkpoint),
`dvc status` is clean, no temp is left, and every object in the DVC cache matches its hash."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from devtools.sandbox import make_project, project_env, run_module
from tests.conftest import ROOT
from tests.stage.test_train_evaluate import assert_three_epochs


def set_params(project: Path, **sections: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, allow_unicode=True))


def start_repro(project: Path, env: dict, log: Path) -> subprocess.Popen:
    # its own process group: the kill takes dvc and the stage it runs, as a crash would
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"dvc repro ended before the kill point:\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"kill point not reached in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def cache_objects(project: Path) -> list[Path]:
    return [p for p in (project / ".dvc/cache/files/md5").rglob("*") if p.is_file()]


def temps(project: Path) -> list[str]:
    return sorted(
        str(p.relative_to(project))
        for folder in ("data", "models", "metrics", "plots")
        if (project / folder).exists()
        for p in (project / folder).iterdir()
        if p.name.endswith(".tmp")
    )


@pytest.mark.slow
def test_sigkill_mid_featurize_and_mid_epoch_then_repro_completes(
    tmp_path, kcbert, klue_dir, kornli_dir
):
    env = project_env(KLUE_NLI_MIRROR=str(klue_dir), KCBERT_DIR=kcbert)
    project = make_project(ROOT, tmp_path / "project", env)
    kornli = yaml.safe_load((project / "params.yaml").read_text())["data"]["kornli"]
    set_params(
        project,
        data={"mirror": str(klue_dir), "kornli": {**kornli, "mirror": str(kornli_dir)}},
        model={
            "name_or_path": kcbert,
            "init": "random",
            "random": {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
        },
        train={"epochs": 3, "max_steps": -1, "learning_rate": 3e-4},
    )
    data = project / "data"

    # 1. featurize killed while its temp folder is being filled
    log1 = tmp_path / "repro1.log"
    proc = start_repro(project, env, log1)
    kill_when(proc, lambda: any(data.glob(".features.*.tmp/*")), log1)
    assert not (data / "features").exists()  # no half-written output in place
    assert temps(project)  # what a SIGKILL leaves behind...

    # 2. train killed mid-epoch: in epoch 2 (of 3; an epoch here takes about 1.5 s)
    log2 = tmp_path / "repro2.log"
    proc = start_repro(project, env, log2)
    checkpoints = project / "models/checkpoints"

    def into_epoch_2() -> bool:  # epoch 1's checkpoint is 0.5 s old: epoch 2 is under way
        for ckpt in checkpoints.glob("*/last.ckpt"):
            with contextlib.suppress(FileNotFoundError):  # replaced while we look
                if time.time() - ckpt.stat().st_mtime > 0.5:
                    return True
        return False

    kill_when(proc, into_epoch_2, log2)
    assert (data / "features/meta.json").is_file()  # featurize reran and completed
    assert not (project / "models/best").exists()
    assert temps(project) == []  # ...is swept by the next run

    # 3. the next repro resumes and completes
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Lightning reports the restore on stderr
        text=True,
        timeout=600,
    )
    done = proc.stdout
    assert proc.returncode == 0, done[-3000:]
    assert "Restored all states from the checkpoint" in done, done[-3000:]
    assert "Running stage 'featurize'" not in done  # its output was whole: not redone
    assert_three_epochs(project / "metrics/train/plots/metrics")
    assert "up to date" in run_module(project, env, "dvc", "status")
    assert temps(project) == []
    assert not list(checkpoints.glob("*/*.ckpt"))  # finished: resume state removed

    # 4. every cache object is what its name says (files: md5 of bytes; .dir: md5 of JSON)
    objects = cache_objects(project)
    assert len(objects) >= 4
    for obj in objects:
        name = obj.parent.name + obj.name.removesuffix(".dir")
        assert hashlib.md5(obj.read_bytes()).hexdigest() == name, obj
    # and DVC agrees: pushing to a local remote and comparing finds nothing to send
    run_module(project, env, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run_module(project, env, "dvc", "push")
    assert "in sync" in run_module(project, env, "dvc", "status", "-c")


@pytest.mark.slow
def test_a_failed_download_under_dvc_caches_nothing(tmp_path, loopback, kcbert):
    """A mirror that keeps cutting the body short: dvc repro fails with the stage's own
    error line, and neither the workspace nor the DVC cache holds any part of the file."""
    env = project_env()
    project = make_project(ROOT, tmp_path / "project", env)
    set_params(project, data={"mirror": loopback.url, "retries": 1, "backoff_s": 0.01})
    loopback.faults["klue-nli-v1.1_dev.json"] = ["truncate"] * 5
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "download"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "download: error:" in output and "dev.json: failed after 2 attempts" in output
    assert "Traceback" not in output
    assert not (project / "data/raw").exists()
    assert temps(project) == []
    assert not (project / ".dvc/cache").exists() or cache_objects(project) == []
    assert "download" in run_module(project, env, "dvc", "status")  # still to be run
