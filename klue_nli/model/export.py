"""The best checkpoint as the model folder every later step loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from klue_nli.core.io import atomic_dir, atomic_write_json
from klue_nli.core.manifest import CALIBRATION_FILE, PROVENANCE_FILE, write_manifest
from klue_nli.model.module import NLIModule


def load_best(module: NLIModule, ckpt_path: str) -> None:
    """The best checkpoint's weights, into `module`."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)


def predict_logits(module: NLIModule, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """The module's logits (n, labels; float32, eval mode) and the gold class ids of a labelled
    loader's pairs, in its order."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    logits, gold = [], []
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            gold.append(batch.pop("labels").cpu().numpy())
            logits.append(module(**batch).float().cpu().numpy())
    module.train(was_training)
    return np.concatenate(logits), np.concatenate(gold)


def export_best(
    module: NLIModule, tokenizer, model_dir: Path, provenance: dict, calibration: dict
) -> None:
    """The module's weights, the tokenizer, the calibration fitted on validation, the lineage
    and the checksums, as one folder written atomically: what evaluate, the registry and the
    service load."""
    with atomic_dir(model_dir) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / CALIBRATION_FILE, calibration)
        atomic_write_json(tmp / PROVENANCE_FILE, provenance)
        write_manifest(tmp)
