"""One call that turns predictions into metrics, confidence intervals, figures and a JSON report."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_runner.evaluation.metrics import (
    as_class_indices,
    bootstrap_ci,
    check_proba,
    compute_metrics,
    expected_calibration_error,
)
from model_runner.evaluation.plots import (
    best_thresholds,
    plot_confusion_matrix,
    plot_f1_by_threshold,
    plot_pr_curves,
    plot_reliability,
    threshold_table,
    write_threshold_csv,
)

CI_METRICS = ("macro_recall", "macro_f1")
ALPHA = 0.05
ECE_BINS = 10


@dataclass
class EvalReport:
    """Metrics of one model on one evaluation set, and the files written for it (if any)."""

    metrics: dict
    files: dict[str, Path] = field(default_factory=dict)

    def primary(self, metric: str) -> float:
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; have {sorted(self.metrics)}")
        return float(self.metrics[metric])

    def ci(self, metric: str) -> tuple[float, float]:
        key = f"{metric}_ci"
        if key not in self.metrics:
            raise KeyError(f"no confidence interval for {metric!r}; have {sorted(CI_METRICS)}")
        lo, hi = self.metrics[key]
        return float(lo), float(hi)


def _jsonable(value: Any, digits: int = 6) -> Any:
    """Round floats and turn numpy/Path values into plain JSON types, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v, digits) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        # JSON has no NaN; null is what a reader can handle.
        return round(float(value), digits) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    labels: Sequence[str],
    out_dir: Path | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    title: str = "",
) -> EvalReport:
    """Metrics, bootstrap CIs of macro recall/F1 and ECE; with ``out_dir``, figures, report.json and
    the per-class F1-by-threshold table (``f1_by_threshold.csv``, its best rows in report.json)."""
    labels = list(labels)
    y_true = as_class_indices(y_true)
    proba = check_proba(y_true, proba, len(labels))
    y_pred = proba.argmax(axis=1)

    metrics = compute_metrics(y_true, proba, labels)
    for name in CI_METRICS:
        # Same classes as the point estimate, so the interval describes that number.
        lo, hi = bootstrap_ci(
            y_true, y_pred, name, n_boot=n_boot, alpha=ALPHA, seed=seed, n_classes=len(labels)
        )
        metrics[f"{name}_ci"] = [lo, hi]
    metrics["ece"] = expected_calibration_error(y_true, proba, ECE_BINS)

    files: dict[str, Path] = {}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        files["confusion_matrix"] = plot_confusion_matrix(
            metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png", title
        )
        files["pr_curves"] = plot_pr_curves(y_true, proba, labels, out_dir / "pr_curves.png", title)
        table = threshold_table(y_true, proba, labels)
        files["f1_by_threshold"] = plot_f1_by_threshold(table, labels, out_dir / "f1_by_threshold.png", title)
        files["f1_by_threshold_table"] = write_threshold_csv(table, out_dir / "f1_by_threshold.csv")
        files["reliability"] = plot_reliability(y_true, proba, out_dir / "reliability.png", ECE_BINS, title)
        report = {
            "title": title,
            "labels": labels,
            **metrics,
            "bootstrap": {"n_boot": n_boot, "seed": seed, "alpha": ALPHA},
            # One-vs-rest: the threshold on each class's own probability that maximises its F1.
            "best_f1_threshold": {
                name: {k: row[k] for k in ("threshold", "precision", "recall", "f1")}
                for name, row in best_thresholds(table).items()
            },
        }
        report_path = out_dir / "report.json"
        report_path.write_text(json.dumps(_jsonable(report), indent=2) + "\n", encoding="utf-8")
        files["report"] = report_path
    return EvalReport(metrics=metrics, files=files)
