"""Checksums of a saved model folder, written last by the train stage.

A copy that went wrong anywhere on the way (the MLflow artifact store, the BentoML store) is
refused by promotion, export and the service before it is served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json

# sha256 of every other file of the folder.
MANIFEST_FILE = "checksums.json"
# Lineage written beside the weights by the train stage (MLflow run id, git commit, DVC hashes).
PROVENANCE_FILE = "provenance.json"
# The temperature and unsure threshold fitted on validation (klue_nli/network/calibration.py).
CALIBRATION_FILE = "calibration.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(model_dir: str | Path) -> None:
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {p.relative_to(model_dir).as_posix(): sha256_file(p) for p in files}
    atomic_write_json(model_dir / MANIFEST_FILE, manifest)


def stat_fingerprint(model_dir: str | Path) -> str:
    """Each file's path, size and modification time, hashed: equal after a full check means no
    file was rewritten since (what a serving worker checks instead of hashing a gigabyte)."""
    model_dir = Path(model_dir).resolve()
    digest = hashlib.sha256(str(model_dir).encode())
    for p in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        st = p.stat()
        digest.update(
            f"{p.relative_to(model_dir).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()


def verify_model_dir(
    model_dir: str | Path, require_manifest: bool = False, checked: str | None = None
) -> None:
    """Raise UserError naming each missing or changed file; without a manifest, only when
    `require_manifest` (the registry and the service require one).

    `checked`: the `stat_fingerprint` of the folder when a full check passed (the service's
    deployment hook does it once); if the folder still has it, the checksums are not
    computed again."""
    model_dir = Path(model_dir)
    if checked is not None and checked == stat_fingerprint(model_dir):
        return
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        if require_manifest:
            raise UserError(f"{model_dir}: no {MANIFEST_FILE}; not a model folder of this pipeline")
        return
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{model_dir}: unreadable {MANIFEST_FILE} ({exc})") from None
    problems = []
    for name, digest in manifest.items():
        file = model_dir / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(file) != digest:
            problems.append(f"{name} is corrupt (sha256 mismatch)")
    if problems:
        raise UserError(f"{model_dir}: " + "; ".join(problems))


def weights_sha256(model_dir: str | Path, verify: bool = True) -> str:
    """A model folder's identity: its weights file's checksum (evaluate records it; register
    checks the folder is still the model evaluate scored), computed from the file and checked
    against the manifest train wrote, so a weights file changed since is named, never
    vouched for. verify=False: the manifest's figure alone, for a folder checked whole just
    before (the service's, by its deployment hook)."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    try:
        recorded = json.loads(path.read_text())["model.safetensors"]
    except (FileNotFoundError, KeyError, ValueError):
        raise UserError(f"{path}: missing or without the weights; rerun train") from None
    if verify:
        weights = model_dir / "model.safetensors"
        if not weights.is_file() or sha256_file(weights) != recorded:
            raise UserError(
                f"{weights} is not the file its manifest ({MANIFEST_FILE}) describes: the "
                "weights changed after train wrote them; rerun train"
            )
    return recorded
