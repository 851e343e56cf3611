"""compute_metrics, ECE and agreement against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from model_runner.evaluation import agreement, compute_metrics, expected_calibration_error
from tests.evaluation.helpers import proba_for

# 3 classes, 10 items. Per class (true support / predicted / correct): 0: 3/3/2, 1: 2/3/1, 2: 5/4/3.
Y3_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
Y3_PRED = [0, 0, 1, 1, 2, 2, 2, 2, 0, 1]

# 4 classes, 8 items; class 3 is never predicted. Per class: 0: 2/3/1, 1: 2/4/2, 2: 2/1/1, 3: 2/0/0.
Y4_TRUE = [0, 0, 1, 1, 2, 2, 3, 3]
Y4_PRED = [0, 1, 1, 1, 2, 0, 0, 1]


def test_three_class_hand_computed():
    m = compute_metrics(np.array(Y3_TRUE), proba_for(Y3_PRED, 3), ["negative", "neutral", "positive"])

    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 5) / 3)
    # F1 per class = 2 * correct / (support + predicted): 4/6, 2/5, 6/9.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    neutral = m["per_class"]["neutral"]
    assert neutral == pytest.approx({"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5, "support": 2})
    assert m["per_class"]["positive"]["precision"] == pytest.approx(3 / 4)
    assert list(m["per_class"]) == ["negative", "neutral", "positive"]


def test_four_class_with_a_never_predicted_class():
    labels = ["anger", "joy", "optimism", "sadness"]
    m = compute_metrics(np.array(Y4_TRUE), proba_for(Y4_PRED, 4), labels)

    assert m["accuracy"] == pytest.approx(4 / 8)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2 + 0) / 4)
    assert m["macro_f1"] == pytest.approx((2 / 5 + 2 / 3 + 2 / 3 + 0) / 4)
    sadness = m["per_class"]["sadness"]
    assert sadness == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["anger"]["precision"] == pytest.approx(1 / 3)
    assert [row[3] for row in m["confusion_matrix"]] == [0, 0, 0, 0]
    assert np.array(m["confusion_matrix"]).shape == (4, 4)


def test_class_absent_from_y_true_still_reported():
    y_true = np.array([0, 0, 1, 1])
    m = compute_metrics(y_true, proba_for([0, 1, 1, 2], 3), ["a", "b", "c"])

    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    # The empty class counts as 0 in the macro average (sklearn with labels=range(k), zero_division=0).
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)


def test_two_classes_and_plain_python_types():
    m = compute_metrics([1, 0, 1, 1], proba_for([1, 0, 0, 1], 2), ["no", "yes"])

    assert m["macro_recall"] == pytest.approx((1 + 2 / 3) / 2)
    assert type(m["accuracy"]) is float
    assert type(m["per_class"]["yes"]["support"]) is int
    assert type(m["confusion_matrix"][0][0]) is int


@pytest.mark.parametrize(
    ("y_true", "proba", "labels", "message"),
    [
        ([0, 1], np.ones((2, 3)) / 3, ["a", "b"], "columns"),
        ([0, 1, 1], np.ones((2, 2)) / 2, ["a", "b"], "rows"),
        ([0, 2], np.ones((2, 2)) / 2, ["a", "b"], "class index"),
        ([0, -1], np.ones((2, 2)) / 2, ["a", "b"], "negative"),
        ([0.5, 1], np.ones((2, 2)) / 2, ["a", "b"], "integer"),
        ([], np.ones((0, 2)), ["a", "b"], "zero examples"),
        ([0], np.ones((1, 1)), ["a"], "k >= 2"),
    ],
)
def test_bad_inputs_are_rejected(y_true, proba, labels, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(np.asarray(y_true), proba, labels)


def test_ece_zero_for_calibrated_data():
    # Within each bin accuracy equals confidence: 10 items at 0.8 with 8 right, 5 at 0.6 with 3 right,
    # 4 at 1.0 all right.
    y_pred = np.zeros(19, dtype=int)
    y_true = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2 + [0] * 4)
    confidence = np.array([0.8] * 10 + [0.6] * 5 + [1.0] * 4)
    proba = np.column_stack([confidence, 1 - confidence])

    assert (proba.argmax(axis=1) == y_pred).all()
    assert expected_calibration_error(y_true, proba) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed():
    # Bin (0.8, 0.9]: 4 items at 0.9, 2 right -> |0.5 - 0.9| * 4/10.
    # Bin (0.6, 0.7]: 6 items at 0.65, all right -> |1.0 - 0.65| * 6/10.
    proba = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.65, 0.2, 0.15]] * 6)
    y_true = np.array([0, 0, 1, 2] + [0] * 6)

    assert expected_calibration_error(y_true, proba) == pytest.approx(0.4 * 0.4 + 0.35 * 0.6)
    # One bin holding everything: |accuracy - mean confidence| = |0.8 - 0.75|.
    assert expected_calibration_error(y_true, proba, n_bins=1) == pytest.approx(0.05)


def test_ece_confidence_on_a_bin_edge_uses_right_closed_bins():
    # A top confidence of exactly 0.5 belongs to (0.4, 0.5], not to (0.5, 0.6] with the two 0.55s.
    proba = np.array([[0.5, 0.5], [0.45, 0.55], [0.55, 0.45]])
    y_true = np.array([0, 1, 1])
    # (0.4, 0.5]: one item at 0.5, right. (0.5, 0.6]: two items at 0.55, one right.
    expected = (1 / 3) * abs(1 - 0.5) + (2 / 3) * abs(0.5 - 0.55)

    assert expected_calibration_error(y_true, proba) == pytest.approx(expected)


def test_agreement():
    assert agreement(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.75)
    assert agreement(np.array([3, 3]), np.array([3, 3])) == 1.0
    with pytest.raises(ValueError, match="shape"):
        agreement(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="empty"):
        agreement(np.array([]), np.array([]))
