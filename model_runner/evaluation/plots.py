"""Evaluation figures: confusion matrix, one-vs-rest precision-recall curves, F1 by threshold per
class, reliability diagram.

Figures are built on ``matplotlib.figure.Figure`` directly rather than through ``pyplot``: no global
backend or figure registry is touched, so plotting is headless and safe from worker threads while
the service is serving requests.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from model_runner.evaluation.metrics import calibration_bins, expected_calibration_error

_DPI = 110
# Thresholds of the F1-by-threshold table: every hundredth of a class's probability.
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
THRESHOLD_COLUMNS = ("label", "threshold", "precision", "recall", "f1", "predicted", "support")


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def plot_confusion_matrix(
    confusion: np.ndarray | Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Counts and row-normalised (recall per true class) matrices side by side."""
    cm = np.asarray(confusion, dtype=np.float64)
    k = len(labels)
    row_sums = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, row_sums, out=np.zeros_like(cm), where=row_sums > 0)
    side = max(3.5, 0.7 * k + 2)
    fig = Figure(figsize=(2 * side + 1, side), layout="constrained")
    axes = fig.subplots(1, 2)
    # Shrink cell annotations as classes grow so numbers stay inside their cells.
    fontsize = max(5, 11 - k // 3)
    for ax, data, fmt, name in (
        (axes[0], cm, "{:.0f}", "counts"),
        (axes[1], normalised, "{:.2f}", "row-normalised"),
    ):
        image = ax.imshow(data, cmap="Blues", vmin=0, vmax=max(data.max(), 1e-12))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        threshold = data.max() / 2
        for i in range(k):
            for j in range(k):
                colour = "white" if data[i, j] > threshold else "black"
                ax.text(
                    j, i, fmt.format(data[i, j]), ha="center", va="center", color=colour, fontsize=fontsize
                )
        ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
        ax.set_yticks(range(k), labels=list(labels))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.suptitle(f"{title} confusion matrix".strip())
    return _save(fig, path)


def plot_pr_curves(
    y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str], path: Path, title: str = ""
) -> Path:
    """One-vs-rest precision-recall curve per class, average precision in the legend."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    for c, name in enumerate(labels):
        positives = y_true == c
        if not positives.any():
            # A PR curve without positives is undefined; keep the class visible in the legend anyway.
            ax.plot([], [], label=f"{name} (no examples)")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            precision, recall, _ = precision_recall_curve(positives, proba[:, c])
            ap = average_precision_score(positives, proba[:, c])
        ax.step(recall, precision, where="post", label=f"{name} (AP = {ap:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(f"{title} precision-recall (one-vs-rest)".strip())
    return _save(fig, path)


def threshold_table(
    y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str], thresholds: Sequence[float] = THRESHOLDS
) -> list[dict]:
    """One-vs-rest precision, recall and F1 of each class when it is predicted wherever its own
    probability is at least the threshold: one row per (class, threshold), classes in label order.

    ``predicted`` counts the rows called positive, ``support`` the true ones. No row called positive
    gives precision 0 (as scikit-learn's ``zero_division=0``); a class without examples has no recall
    or F1 (``nan``).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    cuts = np.asarray(thresholds, dtype=np.float64)
    rows = []
    for c, name in enumerate(labels):
        positives = y_true == c
        support = int(positives.sum())
        called = proba[:, c][None, :] >= cuts[:, None]  # thresholds x rows
        predicted = called.sum(axis=1)
        tp = (called & positives[None, :]).sum(axis=1)
        precision = np.divide(tp, predicted, out=np.zeros(len(cuts)), where=predicted > 0)
        recall = tp / support if support else np.full(len(cuts), np.nan)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(len(cuts)), where=denominator > 0)
        if not support:
            f1 = np.full(len(cuts), np.nan)
        for i, cut in enumerate(cuts):
            rows.append(
                {
                    "label": name,
                    "threshold": float(cut),
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "predicted": int(predicted[i]),
                    "support": support,
                }
            )
    return rows


def best_thresholds(table: Sequence[dict]) -> dict[str, dict]:
    """Per class, the row of ``threshold_table`` with the highest F1 (the lowest such threshold);
    classes without examples are left out."""
    best: dict[str, dict] = {}
    for row in table:
        if math.isnan(row["f1"]):
            continue
        if row["label"] not in best or row["f1"] > best[row["label"]]["f1"]:
            best[row["label"]] = row
    return best


def plot_f1_by_threshold(table: Sequence[dict], labels: Sequence[str], path: Path, title: str = "") -> Path:
    """F1 of each class (one-vs-rest) against the threshold on its own probability, from
    ``threshold_table``; the best threshold of each class is marked and given in the legend."""
    best = best_thresholds(table)
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    for name in labels:
        rows = [r for r in table if r["label"] == name]
        if name not in best:
            ax.plot([], [], label=f"{name} (no examples)")
            continue
        (line,) = ax.plot([r["threshold"] for r in rows], [r["f1"] for r in rows], label=name)
        top = best[name]
        line.set_label(f"{name} (best F1 = {top['f1']:.3f} at {top['threshold']:.2f})")
        ax.plot([top["threshold"]], [top["f1"]], "o", color=line.get_color())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold on the class's probability")
    ax.set_ylabel("F1 (one-vs-rest)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(f"{title} F1 by threshold".strip())
    return _save(fig, path)


def write_threshold_csv(table: Sequence[dict], path: Path) -> Path:
    """``threshold_table`` as CSV (empty cells where a value is undefined), six decimals."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=THRESHOLD_COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow(
                {
                    k: (
                        ""
                        if isinstance(v, float) and math.isnan(v)
                        else round(v, 6)
                        if isinstance(v, float)
                        else v
                    )
                    for k, v in row.items()
                }
            )
    return path


def plot_reliability(
    y_true: np.ndarray, proba: np.ndarray, path: Path, n_bins: int = 10, title: str = ""
) -> Path:
    """Accuracy vs top-class confidence per bin over the diagonal, with bin counts underneath."""
    edges, counts, accuracy, mean_conf = calibration_bins(y_true, proba, n_bins)
    ece = expected_calibration_error(y_true, proba, n_bins)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    filled = counts > 0

    fig = Figure(figsize=(6, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(
        centres[filled],
        accuracy[filled],
        width=width * 0.9,
        color="tab:blue",
        edgecolor="black",
        alpha=0.8,
        label="accuracy",
    )
    # The gap between what the model claimed (mean confidence) and what it achieved is what ECE sums.
    gap_low = np.minimum(accuracy[filled], mean_conf[filled])
    top.bar(
        centres[filled],
        np.abs(accuracy[filled] - mean_conf[filled]),
        bottom=gap_low,
        width=width * 0.9,
        facecolor="none",
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    top.plot(
        mean_conf[filled], accuracy[filled], "o-", color="tab:orange", label="accuracy at mean confidence"
    )
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    top.set_title(f"{title} reliability — ECE = {ece:.4f}".strip())

    bottom.bar(centres, counts, width=width * 0.9, color="grey", edgecolor="black")
    bottom.set_xlabel("top-class confidence")
    bottom.set_ylabel("count")
    return _save(fig, path)
