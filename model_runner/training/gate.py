"""The candidate against the champion, on the same held-out rows (the rule: ``registry.decide``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, recall_score

from model_runner.evaluation import bootstrap_ci
from model_runner.modeling.classifier import TweetClassifier
from model_runner.registry import GateDecision, ModelRegistry, decide
from model_runner.settings import Settings
from model_runner.training.folds import Split


def metric_fn(metric: str, n_classes: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """Metric averaged over all the task's classes, also those a model never predicts."""
    fn = recall_score if metric == "macro_recall" else f1_score
    classes = list(range(n_classes))
    return lambda y, p: float(fn(y, p, labels=classes, average="macro", zero_division=0))


def judge(
    registry: ModelRegistry, task: str, split: Split, metrics: dict, metric: str, settings: Settings
) -> GateDecision:
    """The gate's decision on a candidate that scored ``metrics`` on ``split``'s evaluation rows.

    The champion (if any) is scored on the same rows; a label the champion predicts that this run's
    label set does not have counts as wrong.
    """
    champion = registry.champion(task)
    candidate_ci = tuple(metrics[f"{metric}_ci"])
    if champion is None:
        return decide(
            metrics[metric], None, tolerance=settings.gate_tolerance, metric=metric, candidate_ci=candidate_ci
        )
    with tempfile.TemporaryDirectory(prefix="tp-champion-") as tmp:
        folder = registry.download(task, version=champion.version, alias=None, dst=Path(tmp))
        old = TweetClassifier.load(folder)
        # map the champion's label names onto this run's indices; a name this run does not know
        # (the label set changed) is replaced by a class that is certainly wrong
        index = {name: i for i, name in enumerate(split.labels)}
        names = old.predict(split.eval_texts, clean=False)
    k = len(split.labels)
    y_eval = split.y_eval
    pred = np.array([index.get(name, (int(y) + 1) % k) for name, y in zip(names, y_eval, strict=True)])
    champion_score = metric_fn(metric, k)(y_eval, pred)
    champion_ci = bootstrap_ci(
        y_eval, pred, metric, n_boot=settings.bootstrap_samples, seed=settings.seed, n_classes=k
    )
    return decide(
        metrics[metric],
        float(champion_score),
        tolerance=settings.gate_tolerance,
        metric=metric,
        candidate_ci=candidate_ci,
        champion_ci=tuple(champion_ci),
        champion_version=champion.version,
    )
