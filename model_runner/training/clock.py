"""A training run's clock: which stage it is in, how far along the bar, how long each stage took,
and whether it has been asked to stop; and ``FitStep``, the per-batch report of a long fit.

A progress callback takes ``(stage, overall progress 0..1)`` or, when it accepts a third argument,
``(stage, overall progress, detail)``: ``detail`` says where in the stage the run is ("epoch 2/3,
batch 120/400, loss 0.412") or is None. Callbacks of either shape work; the clock looks once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

# (stage, overall progress 0..1) or (stage, overall progress 0..1, detail or None)
ProgressFn = Callable[..., None]


@dataclass(frozen=True)
class FitStep:
    """Where an epoch-based fit is: batch ``batch`` of ``batches`` of epoch ``epoch`` of ``epochs``
    (both 1-based) done. The epoch's last report (``epoch_done``) carries the validation scores when
    the fit was given validation rows."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    train_loss: float  # mean training loss over this epoch's batches so far
    val_loss: float | None = None
    val_macro_recall: float | None = None

    @property
    def fraction(self) -> float:
        """The share of the whole fit (every epoch) done."""
        return ((self.epoch - 1) + self.batch / max(self.batches, 1)) / max(self.epochs, 1)

    @property
    def epoch_done(self) -> bool:
        return self.batch >= self.batches

    def describe(self) -> str:
        text = (
            f"epoch {self.epoch}/{self.epochs}, batch {self.batch}/{self.batches}, loss {self.train_loss:.3f}"
        )
        if self.val_loss is not None:
            text += f", val loss {self.val_loss:.3f}"
        if self.val_macro_recall is not None:
            text += f", val macro recall {self.val_macro_recall:.3f}"
        return text


FitCallback = Callable[[FitStep], None]


def takes_detail(fn: Callable | None) -> bool:
    """Whether progress callback ``fn`` accepts ``(stage, progress, detail)``."""
    if fn is None:
        return False
    try:
        inspect.signature(fn).bind("stage", 0.0, None)
    except (TypeError, ValueError):  # two parameters only, or no signature to inspect
        return False
    return True


class TrainingClock:
    """Progress, stage timing and cancellation of one run.

    ``shares`` maps every stage, in run order, to the share of the overall progress bar it ends at; a
    stage starts where the one listed before it ends, whether or not that one ran. A stage's time is
    measured from the end of the previous stage, so the bookkeeping between two stages counts
    towards the next. Every progress report first checks for cancellation.
    """

    def __init__(
        self,
        shares: Mapping[str, float],
        *,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self._shares = dict(shares)
        self._progress = progress
        self._with_detail = takes_detail(progress)
        self._should_stop = should_stop
        self._started = self._lap = time.perf_counter()
        self._current = next(iter(self._shares))
        self.timings: dict[str, float] = {}  # stage -> seconds, of the stages that ended

    def stop_requested(self) -> bool:
        return bool(self._should_stop and self._should_stop())

    def check(self) -> None:
        """Raise ``InterruptedError`` if the run has been asked to stop."""
        if self.stop_requested():
            raise InterruptedError("training cancelled")

    @contextmanager
    def stage(self, name: str) -> Iterator[TrainingClock]:
        """Check for cancellation, report ``name`` at its start, time it if it ends without an error."""
        if name not in self._shares:
            raise KeyError(f"unknown stage {name!r}; stages: {', '.join(self._shares)}")
        self._current = name
        self.progress(0.0)
        yield self
        now = time.perf_counter()
        self.timings[name] = round(now - self._lap, 2)
        self._lap = now

    def progress(self, fraction: float, detail: str | None = None) -> None:
        """Check for cancellation, then report the current stage ``fraction`` (0..1) done; ``detail``
        (where in the stage) reaches callbacks that take it."""
        self.check()
        if self._progress:
            names = list(self._shares)
            index = names.index(self._current)
            lo = self._shares[names[index - 1]] if index else 0.0
            hi = self._shares[self._current]
            value = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
            if self._with_detail:
                self._progress(self._current, value, detail)
            else:
                self._progress(self._current, value)

    def fit_progress(self, start: float = 0.0, end: float = 1.0, label: str = "") -> FitCallback:
        """A ``FitCallback`` that moves the current stage from ``start`` to ``end`` over the fit's
        batches, with the epoch and batch as the detail (prefixed by ``label``)."""

        def report(step: FitStep) -> None:
            detail = f"{label}: {step.describe()}" if label else step.describe()
            self.progress(start + (end - start) * step.fraction, detail)

        return report

    def finish(self) -> None:
        """Report the last stage complete (the whole bar), checking for cancellation once more."""
        self.progress(1.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self._started
