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


def verify_model_dir(model_dir: str | Path, require_manifest: bool = False) -> None:
    """Raise UserError naming each missing or changed file; without a manifest, only when
    `require_manifest` (the registry and the service require one)."""
    model_dir = Path(model_dir)
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


def weights_sha256(model_dir: str | Path) -> str:
    """A model folder's identity: its weights file's checksum, from the manifest train wrote
    (evaluate records it; register checks the folder is still the model evaluate scored)."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())["model.safetensors"]
    except (FileNotFoundError, KeyError, ValueError):
        raise UserError(f"{path}: missing or without the weights; rerun train") from None
