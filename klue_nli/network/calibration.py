"""What the model's confidence means: the temperature its logits are divided by before the
softmax, and the confidence under which an answer is called unsure.

Both are fitted by the train stage on the validation split (premises held out of the train
file; never dev, which measures them) and saved in the model folder as calibration.json,
so they travel with it (MLflow, the exported graph's folder, the Bento). The Predictor
applies them whatever runtime computes the logits.

Temperature scaling (Guo et al., 2017): one scalar T > 0 minimising the negative
log-likelihood of the validation labels. Every logit of a pair is divided by the same T, so
each pair's argmax, and so every answer, is unchanged; only the probabilities move.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from klue_nli.core.errors import UserError
from klue_nli.core.io import atomic_write_json
from klue_nli.core.manifest import CALIBRATION_FILE

# The temperatures searched (log-uniform bounds): far outside what a fine-tuned classifier needs.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    """calibration.json: T, the unsure threshold, and what they were fitted for and on."""

    temperature: float
    unsure_below: float  # an answer whose top probability is below this is unsure
    target_accuracy: float  # the accuracy the answers at or above `unsure_below` reached
    target_met: bool  # false: no threshold reached it on validation, and every answer is unsure
    pairs: int  # validation pairs fitted on
    nll_before: float
    nll_after: float

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities of raw logits (n, labels)."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature).astype(np.float32)

    def unsure(self, probabilities: np.ndarray) -> np.ndarray:
        """Which answers (rows of calibrated probabilities) are unsure."""
        return np.asarray(probabilities).max(axis=-1) < self.unsure_below

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def none_fitted(cls) -> Calibration:
        """For a model folder nobody trained (the benchmarks' random weights): the softmax as it
        is and no answer unsure, saying so (`pairs` 0, `target_met` false)."""
        return cls(1.0, 0.0, 1.0, False, 0, 0.0, 0.0)


def write_calibration(model_dir: str | Path, calibration: Calibration) -> None:
    """calibration.json into a model folder (before its manifest is written)."""
    atomic_write_json(Path(model_dir) / CALIBRATION_FILE, calibration.to_dict())


def read_calibration(model_dir: str | Path) -> Calibration:
    """The model folder's calibration, or one line saying why there is none to use."""
    path = Path(model_dir) / CALIBRATION_FILE
    try:
        raw = json.loads(path.read_text())
        calibration = Calibration(**raw)
    except FileNotFoundError:
        raise UserError(
            f"{path} is missing: the model was saved without a fitted temperature; rerun train"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not calibration.temperature > 0 or not 0 <= calibration.unsure_below <= 1:
        raise UserError(f"{path}: temperature must be > 0 and unsure_below within [0, 1]")
    return calibration


def nll(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold class ids at `temperature`."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(gold)), gold].mean())


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The T minimising the validation NLL (bounded search over log T: NLL is smooth and
    unimodal in it)."""
    from scipy.optimize import minimize_scalar  # training only: the service never fits

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: nll(logits, gold, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(found.x))


def unsure_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The lowest confidence threshold whose kept answers (confidence >= it) are right at
    least `target` of the time: the most answers kept at that accuracy. None when no
    threshold reaches it."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    ranked = np.asarray(confidence)[order]
    running = np.cumsum(np.asarray(correct, dtype=float)[order]) / np.arange(1, len(order) + 1)
    # a threshold keeps every answer tied with it: only the last of each tie is a cut point
    cuts = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    reached = cuts[running[cuts] >= target]
    return float(ranked[reached.max()]) if reached.size else None


def fit_calibration(logits: np.ndarray, gold: np.ndarray, target_accuracy: float) -> Calibration:
    """Temperature and unsure threshold from the validation logits (n, labels) and gold ids."""
    logits, gold = np.asarray(logits, dtype=np.float64), np.asarray(gold)
    if len(gold) == 0:
        raise UserError("calibration: the validation split is empty; raise data.val_fraction")
    temperature = round(fit_temperature(logits, gold), 6)
    # the threshold on the probabilities as the Predictor computes them (float32)
    probs = Calibration(temperature, 0.0, target_accuracy, True, 0, 0.0, 0.0).probabilities(logits)
    threshold = unsure_threshold(probs.max(axis=1), probs.argmax(axis=1) == gold, target_accuracy)
    return Calibration(
        temperature=temperature,
        unsure_below=1.0 if threshold is None else threshold,
        target_accuracy=target_accuracy,
        target_met=threshold is not None,
        pairs=len(gold),
        nll_before=round(nll(logits, gold), 6),
        nll_after=round(nll(logits, gold, temperature), 6),
    )
