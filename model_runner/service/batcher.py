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
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np
from cachetools import LRUCache

from model_runner.service.served import ServedModel

log = logging.getLogger(__name__)


class NotServing(LookupError):
    """No model is loaded for the task."""


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

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name=f"batcher-{self.task}")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None

    async def predict(self, texts: list[str]) -> BatchResult:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(texts, future))
        return await future

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
            batch = [p for p in batch if not p.future.done()]  # the client went away
            if not batch:
                continue
            served = self._current()
            if served is None:
                for p in batch:
                    p.future.set_exception(NotServing(self.task))
                continue
            texts = [t for p in batch for t in p.texts]
            try:
                proba, truncated, computed = await self._classify(loop, served, texts)
            except Exception as exc:  # one bad batch must not kill the loop
                log.exception("inference failed for a batch of %d texts", len(texts))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
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
    """Runs on the inference thread; adjusts torch's intra-op threads first when asked to."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return model.predict_with_truncation(texts, batch_size=pass_size)
