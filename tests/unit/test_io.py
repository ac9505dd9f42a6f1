"""Atomic outputs and model-folder checksums, on tiny inline data."""

from __future__ import annotations

import os

import pytest

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_dir, atomic_write_text
from klue_nli.core.manifest import (
    MANIFEST_FILE,
    stat_fingerprint,
    verify_model_dir,
    write_manifest,
)


def test_a_failing_block_keeps_the_old_folder_and_leaves_no_temp(tmp_path):
    tmp_path = tmp_path / "io"  # a folder of its own (tmp_path also holds other test state)
    out = tmp_path / "features"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed")
    assert (out / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]


def test_temps_left_by_a_killed_run_are_swept_by_the_next_write(tmp_path):
    tmp_path = tmp_path / "io"
    tmp_path.mkdir()
    # what SIGKILL leaves: a temp folder beside a folder output, a temp file beside a file
    (tmp_path / ".features.abc123.tmp").mkdir()
    (tmp_path / ".features.abc123.tmp" / "half.safetensors").write_bytes(b"\0" * 10)
    (tmp_path / ".eval.json.xyz.tmp").write_text("{")
    with atomic_dir(tmp_path / "features") as tmp:
        (tmp / "a").write_text("new")
    atomic_write_text(tmp_path / "eval.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "features"]


def test_checksums_catch_a_changed_or_missing_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    write_manifest(tmp_path)
    verify_model_dir(tmp_path, require_manifest=True)  # whole: no error

    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(UserError, match=r"model.safetensors is corrupt \(sha256 mismatch\)"):
        verify_model_dir(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"model\.safetensors is missing"):
        verify_model_dir(tmp_path)


def test_a_folder_without_checksums_is_refused_only_where_they_are_required(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    verify_model_dir(tmp_path)  # e.g. a folder saved by hand, for evaluate
    with pytest.raises(UserError, match=f"no {MANIFEST_FILE}"):
        verify_model_dir(tmp_path, require_manifest=True)


def test_a_folder_checked_once_is_hashed_again_only_if_a_file_changed(tmp_path):
    """The service hashes the model once (deployment hook); a worker compares each file's size
    and modification time with what they were then."""
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    write_manifest(tmp_path)
    checked = stat_fingerprint(tmp_path)
    before = weights.stat()

    weights.write_bytes(b"weightz")  # same size, rewritten: a later modification time
    later = before.st_mtime_ns + 10**9  # said explicitly: the clock's grain may hide it
    os.utime(weights, ns=(before.st_atime_ns, later))
    with pytest.raises(UserError, match=r"model\.safetensors is corrupt"):
        verify_model_dir(tmp_path, require_manifest=True, checked=checked)
    # the same change with the old time put back is not seen: the checksums were not computed
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    verify_model_dir(tmp_path, require_manifest=True, checked=checked)
    with pytest.raises(UserError, match=r"model\.safetensors is corrupt"):
        verify_model_dir(tmp_path, require_manifest=True)  # without `checked`: hashed


def test_the_weights_identity_is_computed_not_taken_from_the_manifest(tmp_path):
    """evaluate and register record the weights' checksum: a weights file changed after the
    manifest was written is named, not vouched for by the manifest's old figure."""
    from klue_nli.core.manifest import weights_sha256, write_manifest

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    write_manifest(tmp_path)
    recorded = weights_sha256(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(UserError, match=r"model\.safetensors is not the file its manifest"):
        weights_sha256(tmp_path)
    assert weights_sha256(tmp_path, verify=False) == recorded  # a folder checked just before


def test_dvc_lineage_is_recorded_only_for_stages_dvc_runs(tmp_path, monkeypatch):
    """dvc.lock describes the inputs of the last `dvc repro`: a stage called directly (no
    DVC_STAGE) records none of its hashes, and its run says it ran outside DVC."""
    from klue_nli.registry import tracking

    monkeypatch.chdir(tmp_path)
    lock = "stages:\n  download:\n    outs:\n    - path: data/raw\n      md5: abc.dir\n"
    (tmp_path / "dvc.lock").write_text(lock)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert tracking.dvc_hashes() == {} and not tracking.under_dvc()
    monkeypatch.setenv("DVC_STAGE", "download")
    assert tracking.dvc_hashes() == {"dvc.download.data/raw": "abc.dir"}
