"""Classification metrics, bootstrap confidence intervals and calibration error.

Every function takes integer class indices (``0..k-1``) and, where probabilities are involved, an
``(n, k)`` array; class names only matter for presentation. Nothing assumes three classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

BOOTSTRAP_METRICS = ("macro_recall", "macro_f1", "accuracy")

# Upper bound on resample indices held in memory at once (int64: ~32 MB), so that large evaluation
# sets bootstrap in chunks instead of allocating n_boot * n at once.
_MAX_INDICES_PER_CHUNK = 4_000_000


def as_class_indices(y: np.ndarray | Sequence[int], name: str = "y_true") -> np.ndarray:
    """Return ``y`` as a 1-d int64 array, refusing non-integral or negative values."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    # Labels read back from JSON or pandas may arrive as floats; accept them only if exact.
    exact_floats = np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not exact_floats:
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} holds negative class indices")
    return arr


def check_proba(y_true: np.ndarray, proba: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    """Validate an ``(n, k)`` probability array against ``y_true`` (and the label count if given)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must have shape (n, k) with k >= 2, got {proba.shape}")
    if proba.shape[0] != len(y_true):
        raise ValueError(f"proba has {proba.shape[0]} rows but y_true has {len(y_true)} items")
    if n_labels is not None and proba.shape[1] != n_labels:
        raise ValueError(f"proba has {proba.shape[1]} columns but there are {n_labels} labels")
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on zero examples")
    if not np.all(np.isfinite(proba)):
        raise ValueError("proba contains NaN or infinite values")
    if y_true.max() >= proba.shape[1]:
        raise ValueError(
            f"y_true holds class index {y_true.max()} but there are only {proba.shape[1]} classes"
        )
    return proba


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str]) -> dict:
    """Point metrics of the arg-max prediction; every class in ``labels`` is reported.

    Classes absent from ``y_true`` get recall 0 (``zero_division=0``) and still count in the macro
    averages, so a model is never rewarded for an evaluation set that happens to miss a class.
    """
    labels = list(labels)
    y_true = as_class_indices(y_true)
    proba = check_proba(y_true, proba, len(labels))
    y_pred = proba.argmax(axis=1)
    k = len(labels)
    idx = list(range(k))

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=idx, average=None, zero_division=0
    )
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=idx, average="macro", zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
    return {
        "macro_recall": float(macro_r),
        "macro_f1": float(macro_f1),
        "macro_precision": float(macro_p),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "n": len(y_true),
    }


def _metric_from_confusions(cms: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` for a stack of confusion matrices ``(b, k, k)`` (rows true, columns predicted).

    Same definitions as scikit-learn with ``zero_division=0`` over a fixed label set (the tests check
    equality against sklearn); written on counts because calling sklearn once per resample is ~100x
    slower than one vectorised pass.
    """
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(np.float64)
    if metric == "accuracy":
        return tp.sum(axis=1) / cms.sum(axis=(1, 2))
    support = cms.sum(axis=2)
    if metric == "macro_recall":
        denom = support
    elif metric == "macro_f1":
        # F1 = 2tp / (2tp + fp + fn) = 2tp / (support + predicted), which is 0/0 only when both are 0.
        tp = 2 * tp
        denom = support + cms.sum(axis=1)
    else:
        raise ValueError(f"unknown metric {metric!r}; expected one of {BOOTSTRAP_METRICS}")
    per_class = np.divide(tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return per_class.mean(axis=1)


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: str = "macro_recall",
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_classes: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``metric`` over resampled examples.

    ``n_classes`` fixes the classes averaged by the macro metrics (``range(n_classes)``, as in
    :func:`compute_metrics`); by default the classes seen in ``y_true`` or ``y_pred``. A class that a
    resample happens to miss scores 0 there, exactly as sklearn would score that resample.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {BOOTSTRAP_METRICS}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    y_true = as_class_indices(y_true)
    y_pred = as_class_indices(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    n = len(y_true)
    if n == 0:
        raise ValueError("cannot bootstrap zero examples")

    if n_classes is None:
        # Re-index to the observed classes so gaps in the numbering do not count as empty classes.
        classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        k = len(classes)
        t, p = codes[:n], codes[n:]
    else:
        k = n_classes
        if max(y_true.max(), y_pred.max()) >= k:
            raise ValueError(f"class index out of range for n_classes={k}")
        t, p = y_true, y_pred
    cell = t * k + p  # each example's cell in a flattened k x k confusion matrix

    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        cells = cell[rng.integers(0, n, size=(b, n))]
        # Offset each resample into its own block so a single bincount builds all b confusion matrices.
        cells += (np.arange(b) * k * k)[:, None]
        cms = np.bincount(cells.ravel(), minlength=b * k * k).reshape(b, k, k)
        stats[start : start + b] = _metric_from_confusions(cms, metric)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def calibration_bins(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins of the top-class confidence: ``(edges, counts, accuracy, mean_confidence)``.

    Bins are right-closed, ``(0, 0.1], (0.1, 0.2], ...`` like ``sklearn.calibration.calibration_curve``;
    empty bins have accuracy and confidence NaN. Shared by the ECE and the reliability diagram so the
    number in the plot title is the one the bars show.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    y_true = as_class_indices(y_true)
    proba = check_proba(y_true, proba)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bin_ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bin_ids, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(bin_ids, weights=confidence, minlength=n_bins) / counts
    return edges, counts, accuracy, mean_conf


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top-class confidence: count-weighted mean of |accuracy - confidence| over bins."""
    _, counts, accuracy, mean_conf = calibration_bins(y_true, proba, n_bins)
    filled = counts > 0
    weights = counts[filled] / counts.sum()
    return float(np.sum(weights * np.abs(accuracy[filled] - mean_conf[filled])))


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Share of items on which two models predict the same label (e.g. fp32 vs int8)."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"prediction arrays differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("cannot compare empty prediction arrays")
    return float(np.mean(a == b))
