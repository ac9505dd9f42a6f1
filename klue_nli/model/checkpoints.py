"""Where an interrupted train run resumes: Lightning checkpoints under paths.checkpoints_dir,
in a folder keyed by a fingerprint of everything that shapes training, so a changed config
never resumes a stale run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from klue_nli.core.params import Params, params_to_dict


def fingerprint(params: Params, features_meta: dict) -> str:
    """What a checkpoint must match to be resumed: everything that shapes training."""
    tree = params_to_dict(params)
    relevant = {key: tree[key] for key in ("seed", "labels", "model", "train")}
    relevant["features"] = features_meta
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_dir(params: Params, features_meta: dict) -> Path:
    return Path(params.paths.checkpoints_dir) / fingerprint(params, features_meta)


def resume_step(last: Path) -> int | None:
    """The global step a `last.ckpt` was saved at, or None where there is none to resume."""
    if not last.exists():
        return None
    return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"])
