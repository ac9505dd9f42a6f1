"""The best checkpoint as the model folder every later step loads."""

from __future__ import annotations

from pathlib import Path

import torch

from klue_nli.core.io import atomic_dir, atomic_write_json
from klue_nli.core.manifest import PROVENANCE_FILE, write_manifest
from klue_nli.model.module import NLIModule


def export_best(
    module: NLIModule, ckpt_path: str, tokenizer, model_dir: Path, provenance: dict
) -> None:
    """The checkpoint's weights, the tokenizer, the lineage and the checksums, as one folder
    written atomically: what evaluate, the registry and the service load."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    with atomic_dir(model_dir) as tmp:
        module.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / PROVENANCE_FILE, provenance)
        write_manifest(tmp)
