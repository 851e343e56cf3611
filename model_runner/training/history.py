"""Per-epoch loss curves of a training run's epoch-based fits, as MLflow step metrics.

The final fit (and the warm-up fine-tune, if the run has one) logs, at each epoch's end, with
``step`` = the epoch counted from 0, so that the run page draws them as curves:

- ``fit/train_loss``: the mean class-weighted cross-entropy over the epoch's batches;
- ``fit/val_loss``, ``fit/val_macro_recall``: the same loss and the macro recall on the held-out
  evaluation rows (at most ``CURVE_ROWS`` of them, a stratified sample; params ``fit.val_rows`` and
  ``fit.val_source``). They watch the fit and choose nothing: the final fit trains on every training
  row, has no early stopping, and the gate scores the whole held-out split once, afterwards.

The warm-up's curves are ``warmup/...``, scored on the warm-up task's own held-out rows.

Only the ``mlp``, ``lora`` and ``finetune`` adapters have epochs. ``linear`` is one lbfgs solve of a
logistic regression (scikit-learn): no epochs, so no curves; its run has ``fit.epochs`` absent too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import mlflow
import numpy as np
from mlflow.entities import Metric, Param

from model_runner.training.clock import FitCallback, FitStep

log = logging.getLogger(__name__)

# held-out rows scored after every epoch: one inference pass each, a few seconds on a CPU
CURVE_ROWS = 1000


def curve_sample(y: np.ndarray, limit: int = CURVE_ROWS, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` rows of ``y``, every class in proportion (each at least once)."""
    y = np.asarray(y)
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = min(len(rows), max(1, round(limit * len(rows) / len(y))))
        picked.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(picked))


def fan_out(*callbacks: FitCallback | None) -> FitCallback:
    """One ``FitCallback`` calling each of ``callbacks`` (None ones left out) in order."""
    chosen = [cb for cb in callbacks if cb is not None]

    def report(step: FitStep) -> None:
        for cb in chosen:
            cb(step)

    return report


@dataclass
class EpochHistory:
    """A ``FitCallback`` that keeps each epoch's losses and logs them to MLflow run ``run_id`` as
    ``<prefix>/train_loss``, ``<prefix>/val_loss`` and ``<prefix>/val_macro_recall`` with ``step`` =
    epoch - 1. A logging failure is a warning: the curves must not fail a training run."""

    run_id: str
    prefix: str
    client: mlflow.MlflowClient = field(default_factory=mlflow.MlflowClient)
    epochs: list[FitStep] = field(default_factory=list)
    _warned: bool = False

    def describe(self, rows: int, source: str) -> None:
        """Say which rows the ``val_`` curves are scored on (params ``<prefix>.val_rows``/``_source``)."""
        self._log(
            lambda: self.client.log_batch(
                self.run_id,
                params=[
                    Param(f"{self.prefix}.val_rows", str(rows)),
                    Param(f"{self.prefix}.val_source", source[:500]),
                ],
            )
        )

    def __call__(self, step: FitStep) -> None:
        if not step.epoch_done:
            return
        self.epochs.append(step)
        now = int(time.time() * 1000)
        values = {
            "train_loss": step.train_loss,
            "val_loss": step.val_loss,
            "val_macro_recall": step.val_macro_recall,
        }
        metrics = [
            Metric(f"{self.prefix}/{name}", float(value), now, step.epoch - 1)
            for name, value in values.items()
            if value is not None
        ]
        self._log(lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def curves(self) -> dict[str, list[float | None]]:
        """The epochs' values so far, by metric name (without the prefix)."""
        return {
            "train_loss": [s.train_loss for s in self.epochs],
            "val_loss": [s.val_loss for s in self.epochs],
            "val_macro_recall": [s.val_macro_recall for s in self.epochs],
        }

    def _log(self, call) -> None:
        try:
            call()
        except Exception as exc:  # MLflow down or refusing: the training goes on without its curves
            if not self._warned:
                log.warning("%s curves not logged to MLflow (%s: %s)", self.prefix, type(exc).__name__, exc)
                self._warned = True


def texts_at(texts: Sequence[str], idx: np.ndarray) -> list[str]:
    return [texts[i] for i in idx]
