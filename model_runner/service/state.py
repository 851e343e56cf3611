"""Everything one app instance owns, created in ``create_app`` and started by its lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from fastapi.concurrency import run_in_threadpool

from model_runner.jobs.training_jobs import JobStore
from model_runner.service.metrics import ServiceMetrics
from model_runner.service.models import ModelManager
from model_runner.service.training import TrainingSupervisor
from model_runner.settings import Settings
from model_runner.wiring import Components

log = logging.getLogger(__name__)


class ServiceState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.components = Components(settings)
        self.metrics = ServiceMetrics()
        # one thread for every forward pass: batches queue instead of fighting over the cores
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.jobs = TrainingSupervisor(
            settings, JobStore(lambda: self.components.db), on_success=self._after_training
        )
        self.models = ModelManager(
            settings,
            self.executor,
            on_swap=self.metrics.served,
            on_batch=self.metrics.observe_batch,
            threads=self.serving_threads,
        )
        self.started_at = datetime.now(UTC)
        self.startup_done = asyncio.Event()
        self.startup_error: str | None = None
        self._background: list[asyncio.Task] = []

    def serving_threads(self) -> int:
        """Torch threads for the next forward pass: fewer while our training worker shares the cores."""
        if self.settings.inference_threads_while_training and self.jobs.worker_running:
            return self.settings.inference_threads_while_training
        return self.settings.inference_threads or os.cpu_count() or 1

    async def start(self) -> None:
        import torch

        torch.set_num_threads(self.serving_threads())
        self.models.start()
        self._background.append(asyncio.create_task(self._startup(), name="startup"))
        if self.settings.reload_poll_s:
            self._background.append(asyncio.create_task(self._poll_registry(), name="registry-poll"))

    async def _startup(self) -> None:
        """Heavy start-up work after the port is open: /health/live answers at once, ready later."""
        try:
            await run_in_threadpool(self.components.db.ensure_schema)
            await run_in_threadpool(self.jobs.recover)
            for result in await self.models.load_all():
                self.metrics.reloads.labels(result.task, "ok" if result.reloaded else "skipped").inc()
                log.info("start-up load %s: %s", result.task, result.message)
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("start-up failed")
        finally:
            self.startup_done.set()

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_poll_s)
            for task in self.models.tasks:
                await self.reload(task)

    async def reload(self, task: str):
        result = await self.models.reload(task)
        outcome = "swapped" if result.reloaded else ("failed" if task in self.models.last_error else "same")
        self.metrics.reloads.labels(task, outcome).inc()
        return result

    async def _after_training(self, job) -> dict:
        if not (job.result or {}).get("promoted"):
            return {"reloaded": False, "message": "not promoted: the served model stays"}
        if job.task not in self.models.tasks:
            return {"reloaded": False, "message": f"task {job.task} is not served here"}
        return (await self.reload(job.task)).to_dict()

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.jobs.shutdown()
        await self.models.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
