"""evaluate(): metrics with intervals and ECE, the figures, the F1-by-threshold table and the JSON report."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from model_runner.evaluation import EvalReport, compute_metrics, evaluate, expected_calibration_error
from model_runner.evaluation.plots import THRESHOLDS, best_thresholds, threshold_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = {2: ["negative", "positive"], 4: ["anger", "joy", "optimism", "sadness"]}


def _soft_classifier(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probability rows that lean towards the true class: a mediocre, unsure model."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    proba[np.arange(n), y_true] += 0.4
    return y_true, proba / proba.sum(axis=1, keepdims=True)


# Module scope: drawing the figures dominates the run time, and the tests below only read the result.
@pytest.fixture(scope="module", params=[2, 4], ids=["k2", "k4"])
def written(request, tmp_path_factory):
    k = request.param
    y_true, proba = _soft_classifier(400, k, seed=k)
    out_dir = tmp_path_factory.mktemp(f"k{k}") / "eval"
    report = evaluate(y_true, proba, LABELS[k], out_dir, n_boot=300, title="candidate v7")
    return k, y_true, proba, report, out_dir


def test_writes_the_report_files(written):
    _, _, _, report, out_dir = written
    names = {"report": "report.json", "confusion_matrix": "confusion_matrix.png"}
    names |= {"pr_curves": "pr_curves.png", "reliability": "reliability.png"}
    names |= {"f1_by_threshold": "f1_by_threshold.png", "f1_by_threshold_table": "f1_by_threshold.csv"}

    assert {key: path.name for key, path in report.files.items()} == names
    for key, path in report.files.items():
        assert path.parent == out_dir
        assert path.is_file()
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG_MAGIC), key
            assert len(data) > 10_000, key  # axes, labels and data, not an empty canvas


def test_metrics_include_intervals_and_ece(written):
    k, y_true, proba, report, _ = written
    point = compute_metrics(y_true, proba, LABELS[k])

    for key, value in point.items():
        assert report.metrics[key] == value
    assert report.metrics["ece"] == pytest.approx(expected_calibration_error(y_true, proba))
    assert report.metrics["ece"] > 0.01  # the fake model is under-confident, so it is visibly miscalibrated
    for metric in ("macro_recall", "macro_f1"):
        lo, hi = report.ci(metric)
        assert report.metrics[f"{metric}_ci"] == [lo, hi]
        assert lo < report.primary(metric) < hi
    assert report.primary("accuracy") == point["accuracy"]


def test_report_json_round_trips(written):
    k, _, _, report, _ = written
    saved = json.loads(report.files["report"].read_text())

    assert saved["labels"] == LABELS[k]
    assert saved["n"] == 400
    assert saved["title"] == "candidate v7"
    assert saved["bootstrap"] == {"n_boot": 300, "seed": 0, "alpha": 0.05}
    assert saved["confusion_matrix"] == report.metrics["confusion_matrix"]
    for key in ("macro_recall", "macro_f1", "accuracy", "ece"):
        assert saved[key] == pytest.approx(report.metrics[key], abs=5e-7)
        assert saved[key] == round(saved[key], 6)
    assert saved["macro_recall_ci"] == pytest.approx(report.metrics["macro_recall_ci"], abs=5e-7)
    assert set(saved["per_class"]) == set(LABELS[k])
    for name, stats in saved["per_class"].items():
        assert stats == pytest.approx(report.metrics["per_class"][name], abs=5e-7)


def test_f1_by_threshold_table_per_class(written):
    """One-vs-rest per class: predicted wherever the class's own probability reaches the threshold."""
    k, y_true, proba, report, _ = written
    with report.files["f1_by_threshold_table"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == k * len(THRESHOLDS)
    assert [r["label"] for r in rows[:: len(THRESHOLDS)]] == LABELS[k]
    c, cut = k - 1, 0.3
    row = next(r for r in rows if r["label"] == LABELS[k][c] and float(r["threshold"]) == cut)
    called, positive = proba[:, c] >= cut, y_true == c
    tp = int((called & positive).sum())
    precision, recall = tp / called.sum(), tp / positive.sum()
    assert int(row["predicted"]) == called.sum() and int(row["support"]) == positive.sum()
    assert float(row["precision"]) == pytest.approx(precision, abs=1e-6)
    assert float(row["recall"]) == pytest.approx(recall, abs=1e-6)
    assert float(row["f1"]) == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-6)
    # threshold 0 calls every row positive: recall 1, precision the class's share
    first = rows[c * len(THRESHOLDS)]
    assert float(first["threshold"]) == 0 and float(first["recall"]) == 1
    assert float(first["precision"]) == pytest.approx(positive.mean(), abs=1e-6)
    # the best threshold per class is in report.json
    saved = json.loads(report.files["report"].read_text())["best_f1_threshold"]
    assert set(saved) == set(LABELS[k])
    for name, best in saved.items():
        f1s = [float(r["f1"]) for r in rows if r["label"] == name]
        assert best["f1"] == pytest.approx(max(f1s), abs=1e-6)


def test_threshold_table_edge_cases():
    # class 1 has no examples: no recall or F1; nothing reaches 0.9 for class 0: precision 0
    y_true = np.array([0, 0, 2, 2])
    proba = np.array([[0.6, 0.1, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])
    table = threshold_table(y_true, proba, ["a", "b", "c"], thresholds=[0.0, 0.5, 0.9])
    by_key = {(r["label"], r["threshold"]): r for r in table}
    assert math.isnan(by_key[("b", 0.5)]["f1"]) and math.isnan(by_key[("b", 0.5)]["recall"])
    assert by_key[("a", 0.9)]["precision"] == 0 and by_key[("a", 0.9)]["f1"] == 0
    assert by_key[("a", 0.5)]["f1"] == 1.0 and by_key[("c", 0.5)]["f1"] == 1.0
    best = best_thresholds(table)
    assert set(best) == {"a", "c"} and best["a"]["threshold"] == 0.5


def test_without_out_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    y_true, proba = _soft_classifier(100, 3, seed=1)
    report = evaluate(y_true, proba, ["a", "b", "c"], n_boot=100)

    assert report.files == {}
    assert list(tmp_path.iterdir()) == []
    assert set(report.metrics) >= {"macro_recall_ci", "macro_f1_ci", "ece", "per_class", "n"}


def test_class_missing_from_the_evaluation_set(tmp_path):
    # "neutral" never occurs: its PR curve is undefined, yet everything is still reported and drawn.
    y_true = np.array([0, 2] * 30)
    proba = np.tile([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], (30, 1))
    report = evaluate(y_true, proba, ["negative", "neutral", "positive"], tmp_path, n_boot=100)

    assert report.metrics["per_class"]["neutral"]["support"] == 0
    assert report.metrics["macro_recall"] == pytest.approx(2 / 3)
    assert report.ci("macro_recall") == pytest.approx((2 / 3, 2 / 3))
    assert report.files["pr_curves"].read_bytes().startswith(PNG_MAGIC)


def test_same_seed_same_report(tmp_path):
    y_true, proba = _soft_classifier(200, 3, seed=2)
    first = evaluate(y_true, proba, ["a", "b", "c"], n_boot=200, seed=3)
    second = evaluate(y_true, proba, ["a", "b", "c"], n_boot=200, seed=3)

    assert first.metrics == second.metrics


def test_unknown_metric_names_raise():
    report = EvalReport(metrics={"macro_recall": 0.5, "macro_recall_ci": [0.4, 0.6]})

    assert report.primary("macro_recall") == 0.5
    assert report.ci("macro_recall") == (0.4, 0.6)
    with pytest.raises(KeyError):
        report.primary("macro_f1")
    with pytest.raises(KeyError):
        report.ci("accuracy")


def test_label_count_must_match_proba():
    y_true, proba = _soft_classifier(50, 3, seed=3)
    with pytest.raises(ValueError, match="labels"):
        evaluate(y_true, proba, ["a", "b"])


def test_plotting_leaves_matplotlib_global_state_alone(tmp_path):
    """evaluate() must not import pyplot or switch the backend (it runs inside a serving process)."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib

        def refuse(*args, **kwargs):
            raise AssertionError("matplotlib.use() was called")

        matplotlib.use = refuse
        import numpy as np
        from model_runner.evaluation import evaluate
        proba = np.array([[0.7, 0.3], [0.4, 0.6], [0.8, 0.2], [0.1, 0.9]])
        evaluate(np.array([0, 1, 1, 1]), proba, ["a", "b"], {str(tmp_path)!r}, n_boot=50)
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert (tmp_path / "reliability.png").is_file()
