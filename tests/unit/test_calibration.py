"""Calibration (klue_nli/network/calibration.py) and its measures (klue_nli/model/metrics.py)
against figures worked out by hand, a temperature recovered from data drawn with it, and the
Predictor applying the model folder's temperature without changing an answer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from klue_nli.core.errors import UserError
from klue_nli.core.manifest import CALIBRATION_FILE, write_manifest
from klue_nli.inference.predictor import Predictor
from klue_nli.model.metrics import (
    brier_score,
    expected_calibration_error,
    reliability_bins,
    risk_coverage,
    selective,
)
from klue_nli.network.calibration import (
    fit_calibration,
    fit_temperature,
    read_calibration,
    softmax,
    unsure_threshold,
)
from tests.helpers import write_calibration

PREMISES = ["비가 와서 길이 젖었다.", "그는 아침마다 공원을 달린다.", "가게는 일요일에 닫는다."]
HYPOTHESES = ["길이 말라 있다.", "그는 운동을 한다.", "가게는 매일 연다."]


def drawn(temperature: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and gold labels drawn from softmax(logits / temperature): data whose true
    temperature is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 3))
    probs = softmax(logits / temperature)
    gold = np.array([rng.choice(3, p=p) for p in probs])
    return logits, gold


def test_ece_brier_and_bins_by_hand():
    # top probabilities 0.9, 0.9, 0.6, 0.6 (bins (13/15, 14/15] and (8/15, 9/15]); right,
    # wrong, right, right: bin 0.9 has accuracy 0.5, bin 0.6 accuracy 1.0
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.6, 0.3]])
    gold = np.array([0, 1, 0, 1])
    points = reliability_bins(probs, gold, 15)
    assert [(p["pairs"], p["accuracy"]) for p in points] == [(2, 1.0), (2, 0.5)]
    assert points[0]["confidence"] == pytest.approx(0.6)
    assert (points[0]["lower"], points[0]["upper"]) == (0.533333, 0.6)
    # ECE: half the pairs 0.4 off, half 0.4 off
    assert expected_calibration_error(probs, gold, 15) == pytest.approx(0.4)
    # Brier: (0.01 + 0.0025 + 0.0025) per right 0.9; wrong 0.9: 0.81 + 0.9025 + 0.0025;
    # right 0.6: 0.16 + 0.09 + 0.01, twice
    expected = (0.015 + 1.715 + 0.26 + 0.26) / 4
    assert brier_score(probs, gold) == pytest.approx(expected)


def test_the_temperature_data_was_drawn_with_is_found():
    logits, gold = drawn(2.5, 20_000)
    assert fit_temperature(logits, gold) == pytest.approx(2.5, rel=0.05)
    logits, gold = drawn(0.6, 20_000, seed=1)
    assert fit_temperature(logits, gold) == pytest.approx(0.6, rel=0.05)


def test_scaling_an_overconfident_model_calibrates_it_and_keeps_every_answer():
    fit_logits, fit_gold = drawn(3.0, 5_000, seed=2)  # the "validation" split
    logits, gold = drawn(3.0, 5_000, seed=3)  # held out: "dev"
    calibration = fit_calibration(fit_logits, fit_gold, target_accuracy=0.8)
    before, after = softmax(logits), calibration.probabilities(logits)
    assert expected_calibration_error(before, gold, 15) > 0.15
    assert expected_calibration_error(after, gold, 15) < 0.03
    assert brier_score(after, gold) < brier_score(before, gold)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()
    assert calibration.nll_after < calibration.nll_before and calibration.pairs == 5_000
    # the threshold fitted on validation holds its accuracy on the held-out pairs, roughly
    kept = selective(after, gold, calibration.unsure(after))
    assert kept["accuracy_kept"] == pytest.approx(0.8, abs=0.03)
    assert 0.1 < kept["coverage"] < 0.9


def test_the_unsure_threshold_is_the_lowest_that_meets_the_target():
    confidence = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 0, 1, 0, 0])
    # kept at >= 0.95: 1/1; >= 0.9: 2/3 (the tie goes together); >= 0.8: 3/4; >= 0.7: 3/5
    assert unsure_threshold(confidence, correct, 0.75) == 0.8
    assert unsure_threshold(confidence, correct, 0.6) == 0.7
    assert unsure_threshold(confidence, correct, 0.9) == 0.95
    assert unsure_threshold(confidence, np.zeros(6), 0.5) is None  # never met: None


def test_a_target_no_threshold_meets_makes_every_answer_unsure():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    calibration = fit_calibration(logits, np.array([1, 0]), target_accuracy=0.9)
    assert not calibration.target_met and calibration.unsure_below == 1.0
    assert calibration.unsure(calibration.probabilities(logits)).all()


def test_risk_coverage_by_hand():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.4, 0.6, 0.0], [0.5, 0.3, 0.2]])
    gold = np.array([0, 1, 1, 0])  # most confident first: right, wrong, right, right
    curve = risk_coverage(probs, gold, points=4)
    assert [(c["coverage"], c["accuracy"]) for c in curve] == [
        (0.25, 1.0),
        (0.5, 0.5),
        (0.75, 2 / 3),
        (1.0, 0.75),
    ]
    assert [c["threshold"] for c in curve] == [0.9, 0.8, 0.6, 0.5]


def test_the_predictor_divides_every_runtimes_logits_by_the_folders_temperature(model_dir):
    plain = Predictor.from_dir(model_dir, device="cpu")
    logits = plain.logits_truncated(PREMISES, HYPOTHESES)[0]
    assert np.allclose(plain.predict_proba(PREMISES, HYPOTHESES), softmax(logits), atol=1e-6)
    write_calibration(model_dir, temperature=0.25, unsure_below=0.9)
    write_manifest(model_dir)
    for runtime in ("torch", "onnxruntime", "openvino"):
        scaled = Predictor.from_dir(model_dir, device="cpu", runtime=runtime, quantize="none")
        probs = scaled.predict_proba(PREMISES, HYPOTHESES)
        assert np.allclose(probs, softmax(logits / 0.25), atol=1e-4), runtime
        # sharper, the same answers
        assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all(), runtime
        assert (probs.max(axis=1) >= softmax(logits).max(axis=1) - 1e-6).all(), runtime
        assert (scaled.unsure(probs) == (probs.max(axis=1) < 0.9)).all()


def test_a_model_folder_without_its_calibration_is_refused_in_one_line(model_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / CALIBRATION_FILE).unlink()
    write_manifest(bare)
    with pytest.raises(UserError, match=r"calibration.json is missing.*rerun train"):
        Predictor.from_dir(bare, device="cpu")
    (bare / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}))
    with pytest.raises(UserError, match=r"calibration\.json: unreadable"):
        read_calibration(bare)
