"""bootstrap_ci: coverage of the point estimate, width, determinism and agreement with sklearn."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from model_runner.evaluation import bootstrap_ci
from model_runner.evaluation import metrics as metrics_module
from tests.evaluation.helpers import noisy_classifier

METRICS = ("macro_recall", "macro_f1", "accuracy")


def _sklearn(metric: str, y_true, y_pred, k: int) -> float:
    if metric == "accuracy":
        return accuracy_score(y_true, y_pred)
    score = recall_score if metric == "macro_recall" else f1_score
    return score(y_true, y_pred, labels=range(k), average="macro", zero_division=0)


@pytest.mark.parametrize("metric", METRICS)
def test_interval_contains_point_estimate(metric):
    y_true, y_pred = noisy_classifier(600, 3, accuracy=0.7, seed=1)
    lo, hi = bootstrap_ci(y_true, y_pred, metric, n_boot=500)
    point = _sklearn(metric, y_true, y_pred, 3)

    assert lo < point < hi
    assert 0.0 < hi - lo < 0.2


def test_interval_narrows_with_more_data():
    small = bootstrap_ci(*noisy_classifier(200, 3, accuracy=0.7, seed=2), n_boot=500)
    # 5,000 items also exercises the chunked path (more than one chunk of resamples).
    large = bootstrap_ci(*noisy_classifier(5000, 3, accuracy=0.7, seed=2), n_boot=500)

    assert large[1] - large[0] < 0.5 * (small[1] - small[0])


def test_deterministic_for_a_seed():
    y_true, y_pred = noisy_classifier(300, 4, accuracy=0.6, seed=3)

    first = bootstrap_ci(y_true, y_pred, "macro_f1", n_boot=300, seed=7)
    assert bootstrap_ci(y_true, y_pred, "macro_f1", n_boot=300, seed=7) == first
    assert bootstrap_ci(y_true, y_pred, "macro_f1", n_boot=300, seed=8) != first


@pytest.mark.parametrize("metric", METRICS)
def test_perfect_classifier_gives_one_one(metric):
    y = np.repeat(np.arange(3), 100)
    assert bootstrap_ci(y, y.copy(), metric, n_boot=500) == (1.0, 1.0)


@pytest.mark.parametrize("metric", METRICS)
def test_matches_an_explicit_sklearn_loop(metric):
    """Same resamples scored one by one with sklearn give the same interval as the vectorised path."""
    n, k, n_boot, seed = 120, 4, 200, 5
    y_true, y_pred = noisy_classifier(n, k, accuracy=0.5, seed=4)
    y_true[y_true == 3] = 2  # class 3 never true: its zero-division handling must match sklearn too

    indices = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    stats = [_sklearn(metric, y_true[i], y_pred[i], k) for i in indices]
    expected = np.quantile(stats, [0.025, 0.975])

    got = bootstrap_ci(y_true, y_pred, metric, n_boot=n_boot, seed=seed, n_classes=k)
    assert got == pytest.approx(tuple(expected), abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_counts_formula_matches_sklearn_on_degenerate_matrices(metric):
    rng = np.random.default_rng(9)
    k = 5
    for _ in range(50):
        # Few items over many classes, so empty rows and columns are common.
        y_true, y_pred = rng.integers(0, k, 6), rng.integers(0, k, 6)
        cm = confusion_matrix(y_true, y_pred, labels=range(k))[None]
        got = metrics_module._metric_from_confusions(cm, metric)[0]
        assert got == pytest.approx(_sklearn(metric, y_true, y_pred, k))


def test_chunking_does_not_change_the_result(monkeypatch):
    y_true, y_pred = noisy_classifier(500, 3, accuracy=0.7, seed=6)
    whole = bootstrap_ci(y_true, y_pred, n_boot=300, seed=1)
    monkeypatch.setattr(metrics_module, "_MAX_INDICES_PER_CHUNK", 500 * 7)  # chunks of 7 resamples

    assert bootstrap_ci(y_true, y_pred, n_boot=300, seed=1) == whole


def test_default_classes_are_the_observed_ones():
    # Labels 0 and 5 only: the gap (1..4) must not count as four empty classes.
    y_true = np.array([0, 0, 5, 5] * 25)
    assert bootstrap_ci(y_true, y_true.copy(), n_boot=100) == (1.0, 1.0)
    # With n_classes fixed, the absent classes do count as recall 0, as in compute_metrics.
    assert bootstrap_ci(y_true, y_true.copy(), n_boot=100, n_classes=6) == pytest.approx((2 / 6, 2 / 6))


def test_fast_enough():
    y_true, y_pred = noisy_classifier(2000, 3, accuracy=0.7, seed=7)
    start = time.perf_counter()
    bootstrap_ci(y_true, y_pred, "macro_f1", n_boot=1000)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "auc"}, "unknown metric"),
        ({"alpha": 1.5}, "alpha"),
        ({"n_boot": 0}, "n_boot"),
        ({"n_classes": 2}, "out of range"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    y = np.array([0, 1, 2, 2])
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(y, y, **kwargs)


def test_length_mismatch_is_rejected():
    with pytest.raises(ValueError, match="items"):
        bootstrap_ci(np.array([0, 1, 1]), np.array([0, 1]))
