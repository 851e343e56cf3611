"""Everything one app instance owns, created in ``create_app`` and started by its lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from fastapi.concurrency import run_in_threadpool
from prometheus_client import Gauge

from model_runner.db.notify import CHAMPION_CHANNEL, JOBS_CHANNEL, Listener, notify
from model_runner.monitoring import ServedRecorder
from model_runner.service import reconcile
from model_runner.service.auth import Tokens
from model_runner.service.hub_source import HubSource
from model_runner.service.metrics import ServiceMetrics
from model_runner.service.model_manager import ModelManager, ReloadOutcome
from model_runner.service.supervisor import TrainingSupervisor
from model_runner.settings import Settings
from model_runner.store.jobs import JobResult
from model_runner.wiring import Components

log = logging.getLogger(__name__)


class ServiceState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.components = Components(settings, pooled_db=True)
        self.metrics = ServiceMetrics()
        self.tokens = Tokens.from_settings(settings)
        # one thread for every forward pass: batches queue instead of fighting over the cores
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.jobs = TrainingSupervisor(self.components, on_finished=self._after_training)
        self.models = ModelManager(
            settings,
            self.executor,
            on_swap=self.metrics.served,
            on_batch=self.metrics.observe_batch,
            threads=self.serving_threads,
        )
        # model_source=hub: every task serves its Hub repo's revision; no MLflow at start-up or serving
        self.hub: HubSource | None = None
        if settings.model_source == "hub":
            self.hub = HubSource(settings, self.models)
            self.models.loader = self.hub.load
            self.hub_last_check = Gauge(
                "tweetpulse_hub_last_check_timestamp_seconds",
                "When the Hub last answered a check of the task's revision (Unix time)",
                ["task"],
                registry=self.metrics.registry,
            )
            self.hub.on_check = lambda task, when: self.hub_last_check.labels(task).set(when.timestamp())
        self.role = settings.role
        self.serves = settings.role in ("all", "serve")  # a train process loads no model
        self.metrics.role.labels(settings.role).set(1)
        self.listener: Listener | None = None
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        # what /inference answers, sampled into Postgres for the drift/collapse checks (docs/monitoring.md)
        self.served: ServedRecorder | None = (
            ServedRecorder(settings, lambda: self.components.db, self.metrics.registry, replica=self.replica)
            if self.serves
            else None
        )
        self.started_at = datetime.now(UTC)
        self.startup_done = asyncio.Event()  # the database is migrated and jobs recovered
        self.models_started = asyncio.Event()  # every task's first load ended (loaded or no champion)
        self.startup_error: str | None = None  # the last start-up failure while it still retries
        self.draining = False  # SIGTERM: readiness turns 503 while in-flight requests finish
        self._background: list[asyncio.Task] = []

    def serving_threads(self) -> int:
        """Torch threads for the next forward pass: fewer while our training worker shares the cores."""
        if self.settings.inference_threads_while_training and self.jobs.worker_running:
            return self.settings.inference_threads_while_training
        return self.settings.inference_threads or os.cpu_count() or 1

    async def start(self) -> None:
        # lazy: service start-up should not need torch (only serving does)
        import torch

        torch.set_num_threads(self.serving_threads())
        self.models.start()
        if self.served is not None:
            await self.served.start()
        # independent: the champion loads from the registry while Postgres is still down
        self._background.append(asyncio.create_task(self._startup(), name="startup-database"))
        if not self.serves:
            self.models_started.set()
            return
        self._background.append(asyncio.create_task(self._load_models(), name="startup-models"))
        if self.hub is not None:
            if self.settings.hub_poll_s:
                poll = self.hub.poll(self.reload, started=self.models_started)
                self._background.append(asyncio.create_task(poll, name="hub-poll"))
        elif self.settings.effective_reload_poll_s():
            self._background.append(asyncio.create_task(self._poll_registry(), name="registry-poll"))

    async def _retrying(self, what: str, step) -> None:
        """Run ``step`` until it succeeds, with exponential backoff capped at ``startup_retry_max_s``."""
        delay = 0.5
        while True:
            try:
                await step()
                return
            except Exception as exc:
                self.startup_error = f"{what}: {type(exc).__name__}"
                log.warning("start-up %s failed (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.startup_retry_max_s)

    async def _startup(self) -> None:
        """Database work after the port is open: /health/live answers at once, ready later."""

        async def database() -> None:
            await run_in_threadpool(self.components.db.ensure_schema)
            await run_in_threadpool(self.jobs.recover)

        await self._retrying("database", database)
        self.startup_error = None
        self.startup_done.set()
        self._listen()

    def _listen(self) -> None:
        """LISTEN for queued jobs (a process that trains) and ended jobs (a serving replica of a
        deployment with separate train processes): both act at once instead of at their next poll."""
        handlers = {}
        if self.jobs.trains:
            handlers[JOBS_CHANNEL] = self._on_job_queued
        if self.role == "serve":
            handlers[CHAMPION_CHANNEL] = self._on_job_ended
        if handlers:
            self.listener = Listener(
                self.components.db, handlers, retry_max_s=self.settings.startup_retry_max_s
            )
            self._background.append(asyncio.create_task(self.listener.run(), name="listen"))

    async def _on_job_queued(self, payload: str | None) -> None:
        self.jobs.wake()

    async def _on_job_ended(self, task: str | None) -> None:
        """A job ended somewhere (None: the LISTEN connection came back, anything may have ended)."""
        names = list(self.models.tasks) if task is None else [task] if task in self.models.tasks else []
        for name in names:
            result = await self.reload(name)
            log.info("NOTIFY %s: %s", name, result.message)

    async def _load_models(self) -> None:
        """Each task's champion (hub mode: its Hub commit), retried while the registry (the Hub) cannot
        be read (no champion, or no Hub repo yet, is no error: the polls pick it up)."""
        pending = list(self.models.tasks)
        delay = 0.5
        while pending:
            for task in list(pending):
                result = await self.reload(task)
                log.info("start-up load %s: %s", task, result.message)
                # a registry or download fault is retried; no champion yet, a refused model or a
                # served one end the start-up load (the registry poll and training reload later)
                if result.reloaded or result.version or result.outcome is not ReloadOutcome.FAILED:
                    pending.remove(task)
            if pending:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.startup_retry_max_s)
        self.models_started.set()

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.effective_reload_poll_s())
            for task in self.models.tasks:
                try:
                    await self.reload(task)
                except Exception:  # a poll never ends the polling
                    log.exception("registry poll of %s failed", task)

    async def reload(self, task: str):
        result = await self.models.reload(task)
        label = {ReloadOutcome.SWAPPED: "swapped", ReloadOutcome.SAME: "same"}.get(result.outcome, "failed")
        self.metrics.reloads.labels(task, label).inc()
        return result

    async def _after_training(self, job=None) -> JobResult | None:
        """A training job ended (any state): converge the served model to the registry's champion and
        return what the job's result records (``reload``, ``served_version``, ``promoted``, ``hub``).
        ``None``: the supervisor's start-up sweep (Hub pushes the champion misses)."""
        if job is None:
            if self.jobs.trains:  # Hub pushes and unrecorded job ends: the business of a train process
                await reconcile.at_startup(self)
            return None
        info = await reconcile.after_job(self, job)
        # serving replicas elsewhere reload the task now rather than at their next registry poll
        if self.jobs.trains:
            try:
                await run_in_threadpool(notify, self.components.db, CHAMPION_CHANNEL, job.task)
            except Exception as exc:
                log.warning("NOTIFY of job %s skipped (%s); replicas poll", job.id, type(exc).__name__)
        return info

    def begin_drain(self) -> None:
        """SIGTERM: readiness answers 503 from now on; the server lets in-flight requests finish."""
        if not self.draining:
            log.warning(
                "draining: readiness is 503; in-flight requests get %.0fs", self.settings.shutdown_grace_s
            )
        self.draining = True

    async def stop(self) -> None:
        self.draining = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.jobs.shutdown()
        await self.models.stop()
        if self.served is not None:
            await self.served.stop()  # flushes what is queued, waits at most 5 s
        self.executor.shutdown(wait=False, cancel_futures=True)
        if "db" in self.components.__dict__:
            self.components.db.close()
