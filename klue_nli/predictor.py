"""The one inference path: a predictor built from a saved model folder.

The folder holds what `save_pretrained` writes for the model (weights in safetensors, config
with the label map) and the tokenizer (with max length). Evaluate, the service and the tests
all predict through `Predictor.predict_proba`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from klue_nli.encoding import encode_pairs, load_tokenizer, pad_batch
from klue_nli.errors import UserError
from klue_nli.io import atomic_write_json

# Lineage written beside the weights by the train stage (MLflow run id, git commit, DVC hashes).
PROVENANCE_FILE = "provenance.json"
# sha256 of every other file of the folder, written last: a copy that went wrong anywhere on
# the way (registry, BentoML store) is refused before it is served.
MANIFEST_FILE = "checksums.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(model_dir: str | Path) -> None:
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {p.relative_to(model_dir).as_posix(): _sha256(p) for p in files}
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
        elif _sha256(file) != digest:
            problems.append(f"{name} is corrupt (sha256 mismatch)")
    if problems:
        raise UserError(f"{model_dir}: " + "; ".join(problems))


class Predictor:
    def __init__(self, model: torch.nn.Module, tokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        config = model.config
        self.labels: tuple[str, ...] = tuple(config.id2label[i] for i in range(config.num_labels))
        # A tokenizer saved without a cap reports a huge model_max_length; the model's own
        # position limit is then the cap.
        self.max_length = min(int(tokenizer.model_max_length), config.max_position_embeddings)

    @classmethod
    def from_dir(
        cls, model_dir: str | Path, device: str | None = None, require_manifest: bool = False
    ) -> Predictor:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise UserError(f"{model_dir}: not a saved model folder (no config.json)")
        verify_model_dir(model_dir, require_manifest)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, use_safetensors=True
            )
        except Exception as exc:  # safetensors and transformers raise many kinds; all mean this
            raise UserError(f"{model_dir}: cannot load the model ({exc})") from None
        tokenizer = load_tokenizer(str(model_dir))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, tokenizer, device)

    @torch.inference_mode()
    def predict_proba(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        """Class probabilities, shape (n, len(self.labels)), in the model's label order."""
        if len(premises) != len(hypotheses):
            raise ValueError("premises and hypotheses differ in length")
        out = np.empty((len(premises), len(self.labels)), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id
        for start in range(0, len(premises), batch_size):
            end = start + batch_size
            enc = encode_pairs(
                self.tokenizer, premises[start:end], hypotheses[start:end], self.max_length
            )
            batch = pad_batch(enc["input_ids"], enc["token_type_ids"], pad_id)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = self.model(**batch).logits.float()
            out[start:end] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[str]:
        probs = self.predict_proba(premises, hypotheses)
        return [self.labels[i] for i in probs.argmax(axis=1)]
