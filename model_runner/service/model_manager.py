"""Which model each task serves, and the only way that changes: a validated, serialised, atomic swap."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from model_runner.errors import NoChampionError
from model_runner.service.batcher import MicroBatcher
from model_runner.service.served import AlreadyServing, ModelValidationError, ServedModel, load_version
from model_runner.settings import Settings

log = logging.getLogger(__name__)


class ReloadOutcome(StrEnum):
    """How a reload ended: a closed set, so callers branch on it and never on the message."""

    SWAPPED = "swapped"  # a new version serves
    SAME = "same"  # the champion already serves
    NO_CHAMPION = "no_champion"  # the registry (or the Hub repo) has no model for the task yet
    INVALID = "invalid"  # the candidate was refused (validation, gate, integrity): the old one serves
    FAILED = "failed"  # registry, download or deadline fault: the old one serves, a retry may help

    @property
    def refused(self) -> bool:
        """The reload route answers 422: the champion cannot be served as it is."""
        return self in (ReloadOutcome.INVALID, ReloadOutcome.FAILED)


@dataclass(frozen=True)
class ReloadResult:
    task: str
    version: str | None
    previous: str | None
    message: str
    outcome: ReloadOutcome = ReloadOutcome.SAME

    @property
    def reloaded(self) -> bool:
        return self.outcome is ReloadOutcome.SWAPPED

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "reloaded": self.reloaded,
            "version": self.version,
            "previous": self.previous,
            "message": self.message,
            "outcome": self.outcome.value,
        }


async def in_own_thread(fn, *args, **kwargs):
    """Run ``fn`` (torch work off the inference thread: loading, int8, ONNX export, canaries) on a
    thread that ends with it.

    torch's OpenMP runtime keeps a worker team for every thread that ever ran a parallel op. While a
    second team lives, as it would on a reused pool thread that once loaded a model, libgomp sees more
    threads than cores, stops spinning between ops, and every serving pass pays thread wake-ups:
    single-message int8 went from 8.2 to 14.7 ms in process on 2 cores. The inference thread must stay
    the only long-lived thread that runs torch.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-oneoff")
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args, **kwargs))
    finally:
        pool.shutdown(wait=False)  # the thread exits now that its only job is done


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        *,
        on_swap=None,
        on_batch=None,
        threads=None,
        loader=None,
    ):
        """``loader(settings, task, unless_serving=version) -> ServedModel``: where a reload takes the
        task's model from (default: the registry champion, ``load_version``; in hub mode
        ``HubSource.load``)."""
        self.settings = settings
        self.loader = loader or load_version
        self.tasks = settings.task_list()
        self._served: dict[str, ServedModel] = {}
        self.last_error: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._on_swap = on_swap
        self.batchers = {
            task: MicroBatcher(
                task,
                lambda task=task: self._served.get(task),
                executor,
                max_size=settings.batch_max_size,
                pass_size=settings.batch_pass_size,
                max_wait_ms=settings.batch_max_wait_ms,
                observe_batch=on_batch,
                threads=threads,
                cache_size=settings.inference_cache_size,
                max_queued_texts=settings.max_queued_texts,
                max_queue_wait_s=settings.max_queue_wait_s,
            )
            for task in self.tasks
        }

    def get(self, task: str) -> ServedModel | None:
        return self._served.get(task)

    @property
    def any_loaded(self) -> bool:
        return bool(self._served)

    def start(self) -> None:
        for batcher in self.batchers.values():
            batcher.start()

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()

    async def load_all(self) -> list[ReloadResult]:
        return [await self.reload(task) for task in self.tasks]

    async def reload(self, task: str, *, loader=None) -> ReloadResult:
        """Load the task's champion beside the served model and swap only if it validates.

        ``loader``: this reload's source instead of the manager's (``self.loader``).

        Reloads are serialised: two callers never load at once, and the second sees the first's result.
        A load gets ``reload_timeout_s``: past it the reload fails and frees the lock, and the
        abandoned load's eventual result is discarded, never swapped in.
        """
        if task not in self.batchers:
            raise KeyError(task)
        loader = loader or self.loader
        async with self._lock:
            previous = self._served.get(task)
            prev_version = previous.version if previous else None

            def kept(message: str, outcome: ReloadOutcome) -> ReloadResult:
                return ReloadResult(task, prev_version, prev_version, message, outcome)

            try:
                candidate = await self._load_within_deadline(loader, task, prev_version)
            except _LoadDeadline as exc:
                self.last_error[task] = f"load failed: {exc}"
                log.error("reload of %s abandoned, still serving %s: %s", task, prev_version, exc)
                return kept(self.last_error[task], ReloadOutcome.FAILED)
            except AlreadyServing:
                return kept("already serving this version", ReloadOutcome.SAME)
            except NoChampionError as exc:
                self.last_error[task] = str(exc)
                return kept(str(exc), ReloadOutcome.NO_CHAMPION)
            except ModelValidationError as exc:
                self.last_error[task] = f"validation failed: {exc}"
                log.error("reload of %s refused, still serving %s: %s", task, prev_version, exc)
                return kept(self.last_error[task], ReloadOutcome.INVALID)
            except Exception as exc:  # registry unreachable, download error: keep serving
                self.last_error[task] = f"load failed: {type(exc).__name__}: {exc}"
                log.exception("reload of %s failed, still serving %s", task, prev_version)
                return kept(self.last_error[task], ReloadOutcome.FAILED)
            self._served[task] = candidate  # the swap: one reference assignment
            self.last_error.pop(task, None)
            log.info("task %s now serves %s (was %s)", task, candidate.tag, prev_version)
            if self._on_swap:
                self._on_swap(candidate)
            return ReloadResult(
                task, candidate.version, prev_version, f"serving {candidate.tag}", ReloadOutcome.SWAPPED
            )

    async def _load_within_deadline(self, loader, task: str, prev_version: str | None) -> ServedModel:
        """``loader`` on its own thread, waited for at most ``reload_timeout_s``.

        Past the deadline the wait is cancelled and ``_LoadDeadline`` raised, so the caller releases
        the lock; the thread cannot be stopped and runs on (its MLflow calls are bounded by
        ``mlflow_timeout_s`` x retries), and whatever it returns later goes nowhere: the swap happens
        only in ``reload``, after this wait, which is gone by then.
        """
        timeout = self.settings.reload_timeout_s
        abandoned = threading.Event()
        started = time.monotonic()

        def run():
            try:
                return loader(self.settings, task, unless_serving=prev_version)
            finally:
                if abandoned.is_set():
                    log.warning(
                        "an abandoned load of %s ended after %.0f s; its result is discarded",
                        task,
                        time.monotonic() - started,
                    )

        load = asyncio.ensure_future(in_own_thread(run))
        try:
            done, _ = await asyncio.wait({load}, timeout=timeout)
        finally:
            if not load.done():  # the deadline passed, or the reload itself was cancelled
                abandoned.set()
                load.cancel()
        if not done:
            raise _LoadDeadline(
                f"no result within the reload deadline of {timeout:g} s (registry unreachable or load"
                " stuck); the late result will be discarded"
            )
        return load.result()


class _LoadDeadline(Exception):
    """A load ran past ``reload_timeout_s``."""
