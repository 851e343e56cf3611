"""A training run's clock: which stage it is in, how far along the bar, how long each stage took,
and whether it has been asked to stop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

ProgressFn = Callable[[str, float], None]  # (stage, overall progress 0..1)


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

    def progress(self, fraction: float) -> None:
        """Check for cancellation, then report the current stage ``fraction`` (0..1) done."""
        self.check()
        if self._progress:
            names = list(self._shares)
            index = names.index(self._current)
            lo = self._shares[names[index - 1]] if index else 0.0
            hi = self._shares[self._current]
            self._progress(self._current, lo + (hi - lo) * fraction)

    def finish(self) -> None:
        """Report the last stage complete (the whole bar), checking for cancellation once more."""
        self.progress(1.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self._started
