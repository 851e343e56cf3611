"""Model evaluation: metrics, bootstrap confidence intervals, calibration and report figures.

Typical use::

    from model_runner.evaluation import evaluate

    report = evaluate(y_true, proba, labels, out_dir=run_dir / "eval", title="candidate")
    report.primary("macro_recall"), report.ci("macro_recall"), report.files["report"]
"""

from model_runner.evaluation.metrics import (
    agreement,
    bootstrap_ci,
    compute_metrics,
    expected_calibration_error,
)
from model_runner.evaluation.report import EvalReport, evaluate

__all__ = [
    "EvalReport",
    "agreement",
    "bootstrap_ci",
    "compute_metrics",
    "evaluate",
    "expected_calibration_error",
]
