"""Showing a training run's progress: a bar on a terminal, plain lines in log files.

``training_progress()`` gives the ``progress=`` callback of ``run_training``: on a terminal a tqdm
bar of the whole run (stage, percent, "epoch 2/3, batch 120/400, loss 0.412"); otherwise (a log
file, a pipe, CI) one plain line per stage change and at most one every ``every_s`` seconds between,
and the other progress bars of the run (embedding, cross-validation) are turned into plain lines too
(``PlainLines``): a log file never gets carriage returns.

The training worker's job logs use ``PlainProgress`` and ``PlainLines`` directly.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from model_runner.training.clock import ProgressFn

_BREAKS = re.compile(r"(\r|\n)")


def _line(stage: str, value: float, detail: str | None) -> str:
    text = f"progress {100 * value:5.1f}%  {stage}"
    return f"{text}: {detail}" if detail else text


class PlainProgress:
    """A progress callback ``(stage, progress, detail=None)`` that emits plain lines (no ``\\r``):
    on every stage change, at the end (progress 1.0), and otherwise at most once every ``every_s``."""

    def __init__(self, emit: Callable[[str], None], every_s: float = 10.0):
        self.emit = emit
        self.every_s = every_s
        self._stage: str | None = None
        self._last = float("-inf")
        self._done = False

    def __call__(self, stage: str, value: float, detail: str | None = None) -> None:
        now = time.monotonic()
        finished = value >= 1.0 and not self._done
        if stage != self._stage or finished or now - self._last >= self.every_s:
            self._stage, self._last, self._done = stage, now, self._done or finished
            self.emit(_line(stage, value, detail))


class PlainLines(io.TextIOBase):
    """A text stream over ``stream`` that turns carriage-return progress bars (tqdm) into plain lines.

    A write that starts with ``\\r`` (a bar redrawing itself) is held back; it is written as a line of
    its own when a newline follows (the bar closes) or when ``every_s`` seconds passed since the last
    one. Everything else passes through unchanged.
    """

    def __init__(self, stream: TextIO, every_s: float = 30.0):
        super().__init__()
        self.stream = stream
        self.every_s = every_s
        self._pending = ""
        self._status_open = False
        self._last = float("-inf")

    def write(self, text: str) -> int:
        in_status = False  # a bar redraw: from a "\r" to the next "\r" or "\n" of the same write
        for part in _BREAKS.split(text):
            if part == "\r":
                in_status = True
            elif part == "\n":
                if in_status or self._status_open:  # a bar ends its line: its last status, once
                    self._flush_pending()
                    self._status_open = False
                else:
                    self.stream.write(part)
                in_status = False
            elif part and in_status:
                self._status(part.rstrip())
            elif part:
                self._flush_pending()
                self._status_open = False
                self.stream.write(part)
        return len(text)

    def _status(self, status: str) -> None:
        self._status_open = True
        if not status:  # a bar clearing itself
            return
        self._pending = status
        if time.monotonic() - self._last >= self.every_s:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self.stream.write(self._pending + "\n")
            self._pending = ""
            self._last = time.monotonic()

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):  # tqdm asks
        return getattr(self.stream, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.stream.fileno()

    def close_bars(self) -> None:
        """Write a bar status still held back."""
        self._flush_pending()
        self.flush()


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Bar:
    """One tqdm bar of the whole run, in tenths of a percent."""

    def __init__(self, stream: TextIO):
        from tqdm.auto import tqdm  # lazy: only a terminal needs it

        self.bar = tqdm(
            total=1000,
            file=stream,
            desc="training",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
            dynamic_ncols=True,
            leave=True,
        )
        self._stage: str | None = None

    def __call__(self, stage: str, value: float, detail: str | None = None) -> None:
        if stage != self._stage:
            self._stage = stage
            self.bar.set_description_str(f"training: {stage}", refresh=False)
        self.bar.set_postfix_str(detail or "", refresh=False)
        target = round(1000 * min(max(value, 0.0), 1.0))
        self.bar.update(max(target - self.bar.n, 0))

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def training_progress(stream: TextIO | None = None, *, every_s: float = 10.0) -> Iterator[ProgressFn]:
    """The ``progress=`` callback for ``run_training``: a bar on a terminal, plain lines otherwise.

    With plain lines on ``sys.stderr`` the run's other tqdm bars (made inside the block) write plain
    lines as well.
    """
    stream = sys.stderr if stream is None else stream
    if _is_tty(stream):
        from tqdm.contrib.logging import logging_redirect_tqdm  # lazy: only a terminal needs it

        bar = _Bar(stream)
        try:
            with logging_redirect_tqdm():  # log lines above the bar instead of through it
                yield bar
        finally:
            bar.close()
        return

    def emit(line: str) -> None:
        print(line, file=stream, flush=True)

    plain = PlainProgress(emit, every_s=every_s)
    if stream is not sys.stderr:
        yield plain
        return
    lines = PlainLines(stream, every_s=max(every_s, 1.0))
    try:
        with contextlib.redirect_stderr(lines):
            yield plain
    finally:
        lines.close_bars()
