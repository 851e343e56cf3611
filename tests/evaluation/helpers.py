"""Helpers for evaluation tests: turn predictions into probability rows and make noisy classifiers."""

from __future__ import annotations

import numpy as np


def proba_for(y_pred, k: int, confidence: float = 0.7) -> np.ndarray:
    """Rows whose arg-max is ``y_pred`` with top probability ``confidence``, the rest spread evenly."""
    y_pred = np.asarray(y_pred)
    proba = np.full((len(y_pred), k), (1 - confidence) / (k - 1))
    proba[np.arange(len(y_pred)), y_pred] = confidence
    return proba


def noisy_classifier(n: int, k: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels and predictions that are right with probability ``accuracy``, else uniform."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    wrong = rng.random(n) > accuracy
    y_pred = np.where(wrong, rng.integers(0, k, n), y_true)
    return y_true, y_pred
