"""Micro-batching: concurrent requests share forward passes.

Requests queue up; one loop per task takes the first, then gathers more until ``max_size`` texts or
``max_wait_ms`` have passed, and runs one forward pass on the serving executor (a single thread for
all tasks, so passes never fight over the CPU cores). Under load the queue fills while a pass runs,
so the next batch forms without waiting at all. The model is read once per batch: a hot reload
swaps it between batches, never inside one, and versions seen by a client never go backwards.

Texts repeated within a batch run once, and a bounded LRU of results for the served model answers
texts it has seen before: monitored tweets repeat verbatim (retweets, bots, copy-paste campaigns),
and a repeat costs a dictionary lookup instead of a forward pass. The cache belongs to one served
model and is emptied when a reload swaps it, so an answer always comes from the model it names.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np
from cachetools import LRUCache

from model_runner.errors import TweetpulseError
from model_runner.service.served import ServedModel

log = logging.getLogger(__name__)


class NotServing(TweetpulseError, LookupError):
    """No model is loaded for the task."""

    status, type = 503, "model_not_loaded"
    retry_after_s = 30


class Overloaded(TweetpulseError, RuntimeError):
    """Admission refused: too many texts wait already, or they would wait too long."""

    status, type = 429, "overloaded"

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(f"overloaded: {message}")
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class DeadlineExceeded(TweetpulseError, TimeoutError):
    """The request waited past its deadline; its texts were dropped from the queue."""

    status, type = 503, "deadline_exceeded"
    retry_after_s = 5


class BadMessage(TweetpulseError, ValueError):
    """A text of this request breaks the forward pass (the other requests of its batch got answers)."""

    status, type = 422, "invalid_message"


class InferenceFailed(TweetpulseError, RuntimeError):
    """The forward pass failed for this request for a reason that is not its text."""

    status, type = 503, "unavailable"
    retry_after_s = 5


# What a tokenizer or model raises when a text is at fault (the tokenizer's Rust panics arrive as
# ``pyo3_runtime.PanicException``, a BaseException; matched by name, the module is not importable).
_TEXT_FAULTS = (ValueError, TypeError, UnicodeError)


def _as_request_error(exc: BaseException) -> Exception:
    if isinstance(exc, _TEXT_FAULTS) or type(exc).__name__ == "PanicException":
        return BadMessage(f"a message could not be processed ({type(exc).__name__})")
    return InferenceFailed(f"inference failed ({type(exc).__name__})")


def _fail(pending: _Pending, exc: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)


class _Rate:
    """Texts per second of recent forward passes (exponentially weighted), for admission."""

    def __init__(self, alpha: float = 0.3):
        self.alpha = alpha
        self.per_s: float | None = None

    def observe(self, texts: int, seconds: float) -> None:
        if texts <= 0 or seconds <= 0:
            return
        rate = texts / seconds
        self.per_s = rate if self.per_s is None else self.alpha * rate + (1 - self.alpha) * self.per_s

    def seconds_for(self, texts: int) -> float:
        return texts / self.per_s if self.per_s else 0.0


@dataclass
class BatchResult:
    proba: np.ndarray
    truncated: np.ndarray
    served: ServedModel


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future


class ResultCache:
    """Probability rows and truncation flags by text, for one served model at a time."""

    def __init__(self, size: int):
        self._rows: LRUCache | None = LRUCache(maxsize=size) if size > 0 else None
        self._owner: weakref.ref | None = None

    def lookup(self, served: ServedModel, texts: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
        if self._rows is None:
            return {}
        if self._owner is None or self._owner() is not served.model:
            # a new model serves: nothing cached belongs to it (a weak reference, so the old model
            # is freed as soon as the swap lets go of it)
            self._rows.clear()
            self._owner = weakref.ref(served.model)
        return {t: row for t in texts if (row := self._rows.get(t)) is not None}

    def store(self, results: dict[str, tuple[np.ndarray, bool]]) -> None:
        # ``lookup`` for the same batch has just made ``served`` the owner
        if self._rows is not None:
            self._rows.update(results)

    def clear(self) -> None:
        if self._rows is not None:
            self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else 0


class MicroBatcher:
    def __init__(
        self,
        task: str,
        current: Callable[[], ServedModel | None],
        executor: Executor,
        *,
        max_size: int,
        max_wait_ms: float,
        pass_size: int = 32,
        observe_batch: Callable[[str, int, int], None] | None = None,
        threads: Callable[[], int] | None = None,
        cache_size: int = 0,
        max_queued_texts: int = 0,
        max_queue_wait_s: float = 0.0,
    ):
        self.task = task
        self._current = current
        self._executor = executor
        self._max_size = max_size
        self._pass_size = pass_size  # texts per forward pass; a gathered batch is token-sorted first
        self._max_wait = max_wait_ms / 1000
        self._observe = observe_batch
        self._threads = threads  # torch threads wanted for the next pass (0 = leave as is)
        self.cache = ResultCache(cache_size)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._loop_task: asyncio.Task | None = None
        self._max_queued = max_queued_texts  # 0 = unbounded
        self._max_queue_wait = max_queue_wait_s  # 0 = no estimate-based admission
        self._rate = _Rate()
        self.waiting_texts = 0  # admitted texts not answered yet (queued or in the running pass)

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name=f"batcher-{self.task}")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    def admit(self, n: int) -> None:
        """Refuse ``n`` more texts (``Overloaded``) when the queue is full or would wait too long."""
        waiting = self.waiting_texts
        if self._max_queued and waiting and waiting + n > self._max_queued:
            wait = max(self._rate.seconds_for(waiting), 1.0)
            raise Overloaded(f"{waiting} texts are waiting (limit {self._max_queued})", wait)
        if self._max_queue_wait and waiting:
            wait = self._rate.seconds_for(waiting + n)
            if wait > self._max_queue_wait:
                raise Overloaded(
                    f"{waiting} texts are waiting, about {wait:.1f}s of work"
                    f" (limit {self._max_queue_wait:g}s)",
                    wait - self._max_queue_wait,
                )

    async def predict(self, texts: list[str], *, deadline_s: float | None = None) -> BatchResult:
        """Queue ``texts`` (after ``admit``) and wait for their answer, at most ``deadline_s``.

        Cancelling the caller (its client went away) or passing the deadline drops the texts from the
        queue: the batcher skips requests whose future is already done.
        """
        self.admit(len(texts))
        future = asyncio.get_running_loop().create_future()
        n = len(texts)
        self.waiting_texts += n
        future.add_done_callback(lambda _f: self._release(n))
        await self._queue.put(_Pending(texts, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline_s)
        except TimeoutError:
            future.cancel()
            raise DeadlineExceeded(f"no answer within {deadline_s:g}s; the service is busy") from None
        finally:
            if not future.done():  # cancelled by the caller: drop the work
                future.cancel()

    def _release(self, n: int) -> None:
        self.waiting_texts -= n

    async def _gather(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        size = len(batch[0].texts)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        while size < self._max_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            size += len(item.texts)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            batch = [p for p in batch if not p.future.done()]  # the client went away or gave up
            if not batch:
                continue
            served = self._current()
            if served is None:
                for p in batch:
                    _fail(p, NotServing(self.task))
                continue
            await self._answer(loop, served, batch)

    async def _answer(self, loop, served: ServedModel, batch: list[_Pending]) -> None:
        """Answer every request of ``batch``; a failing pass is split so only its culprit fails.

        One request whose text breaks the forward pass must not fail the others that happened to
        share its batch: the batch is halved and each half retried, down to the single request,
        which gets the error (about twice the batch's work, only when something failed).
        """
        texts = [t for p in batch for t in p.texts]
        started = loop.time()
        try:
            proba, truncated, computed = await self._classify(loop, served, texts)
        except BaseException as exc:
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            live = [p for p in batch if not p.future.done()]
            if len(live) > 1:
                log.warning("a batch of %d requests failed (%s): retrying in halves", len(live), exc)
                middle = len(live) // 2
                await self._answer(loop, served, live[:middle])
                await self._answer(loop, served, live[middle:])
            elif live:
                log.warning("inference failed for one request of %d texts: %r", len(texts), exc)
                _fail(live[0], _as_request_error(exc))
            return
        self._rate.observe(len(texts), loop.time() - started)
        if self._observe:
            self._observe(self.task, len(texts), computed)
        start = 0
        for p in batch:
            end = start + len(p.texts)
            if not p.future.done():
                p.future.set_result(BatchResult(proba[start:end], truncated[start:end], served))
            start = end

    async def _classify(self, loop, served: ServedModel, texts: list[str]):
        """Probabilities and truncation flags in input order, and how many texts needed the model."""
        unique = list(dict.fromkeys(texts))
        known = self.cache.lookup(served, unique)
        todo = [t for t in unique if t not in known]
        if todo:
            proba, truncated = await loop.run_in_executor(
                self._executor,
                partial(
                    _predict,
                    served.model,
                    todo,
                    self._pass_size,
                    self._threads() if self._threads else 0,
                ),
            )
            fresh = {t: (proba[i], bool(truncated[i])) for i, t in enumerate(todo)}
            self.cache.store(fresh)
            known.update(fresh)
        if not texts:
            return np.zeros((0, len(served.model.labels)), np.float32), np.zeros(0, bool), 0
        proba = np.stack([known[t][0] for t in texts])
        truncated = np.array([known[t][1] for t in texts], dtype=bool)
        return proba, truncated, len(todo)


def _predict(model, texts: list[str], pass_size: int, threads: int):
    """Runs on the inference thread; adjusts torch's intra-op threads first when asked to.

    Texts arrive cleaned and cut by the route (``text_input.prepare_message``), so they are not
    cleaned again here; the result cache is keyed by the cleaned text as well.
    """
    if threads:
        # lazy: service start-up should not need torch (only serving does)
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return model.predict_with_truncation(texts, batch_size=pass_size, clean=False)
