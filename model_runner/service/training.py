"""Runs training jobs in a child process and reacts when they end (hot reload on promotion).

The child is a new session (its own process group), so a cancel that outlives its grace period
stops the worker together with its CV pool; ``/inference`` never shares a process with training.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from fastapi.concurrency import run_in_threadpool

from model_runner.jobs.train_worker import dump_settings
from model_runner.jobs.training_jobs import Job, JobStore
from model_runner.settings import Settings

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 30.0


class TrainingSupervisor:
    def __init__(self, settings: Settings, store: JobStore, *, on_success=None, on_state=None):
        self.settings = settings
        self.store = store
        self._on_success = on_success  # async callable(job) -> dict, e.g. the hot reload
        self._on_state = on_state
        self._procs: dict[str, subprocess.Popen] = {}
        self._watchers: set[asyncio.Task] = set()
        self.log_dir = settings.resolved_home() / "logs" / "jobs"

    def recover(self) -> list[str]:
        """At start-up no job can be running in this deployment's single trainer: end them."""
        reason = f"interrupted: the service on {socket.gethostname()} restarted while the job was active"
        ids = self.store.mark_interrupted(reason)
        if ids:
            log.warning("marked %d interrupted training job(s) failed: %s", len(ids), ", ".join(ids))
        return ids

    def log_path(self, job_id: str) -> Path:
        return self.log_dir / f"{job_id}.log"

    async def submit(self, task: str, params: dict) -> Job:
        job = await run_in_threadpool(self.store.create, task, params)
        try:
            self._spawn(job.id)
        except OSError as exc:
            await run_in_threadpool(
                self.store.update,
                job.id,
                state="failed",
                error=f"could not start the worker: {exc}",
                finished_at=datetime.now(UTC),
            )
            raise
        watcher = asyncio.create_task(self._watch(job.id), name=f"job-{job.id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return job

    @property
    def worker_running(self) -> bool:
        """A training worker started by this service is still alive."""
        return any(proc.poll() is None for proc in self._procs.values())

    def _spawn(self, job_id: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path(job_id).open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "model_runner.jobs.train_worker", job_id],
            stdin=subprocess.PIPE,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=os.getcwd(),
        )
        logfile.close()
        assert proc.stdin is not None
        proc.stdin.write(dump_settings(self.settings).encode())
        proc.stdin.close()
        self._procs[job_id] = proc
        log.info("training job %s started in process %d (log %s)", job_id, proc.pid, self.log_path(job_id))

    async def _watch(self, job_id: str) -> None:
        proc = self._procs[job_id]
        cancel_seen_at: float | None = None
        loop = asyncio.get_running_loop()
        while proc.poll() is None:
            await asyncio.sleep(self.settings.job_poll_s)
            job = await run_in_threadpool(self.store.get, job_id)
            if self._on_state and job:
                self._on_state(job)
            if job and job.cancel_requested:
                cancel_seen_at = cancel_seen_at or loop.time()
                if loop.time() - cancel_seen_at > CANCEL_GRACE_S:
                    log.warning("job %s did not stop within %.0fs: terminating it", job_id, CANCEL_GRACE_S)
                    self._kill(proc)
        self._procs.pop(job_id, None)
        job = await run_in_threadpool(self.store.get, job_id)
        if job is None:
            return
        if job.state in ("queued", "running"):
            # the worker died without recording an outcome (crash, OOM kill, terminate)
            state = "cancelled" if job.cancel_requested else "failed"
            error = (
                "cancelled on request"
                if job.cancel_requested
                else (f"worker exited with code {proc.returncode}; see {self.log_path(job_id)}")
            )
            await run_in_threadpool(
                self.store.update, job_id, state=state, error=error, finished_at=datetime.now(UTC)
            )
            job = await run_in_threadpool(self.store.get, job_id)
        if self._on_state and job:
            self._on_state(job)
        if job.state == "succeeded" and self._on_success:
            reload = await self._on_success(job)
            result = dict(job.result or {}, reload=reload)
            await run_in_threadpool(self.store.update, job_id, result=result)

    def _kill(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    async def shutdown(self) -> None:
        """Stop running workers (their jobs end as failed/interrupted, the champion is untouched)."""
        for job_id, proc in list(self._procs.items()):
            log.warning("service stopping: terminating training job %s", job_id)
            self._kill(proc)
            await run_in_threadpool(
                self.store.update,
                job_id,
                only_if_active=True,
                state="failed",
                error="interrupted: the service stopped",
                finished_at=datetime.now(UTC),
            )
        for watcher in list(self._watchers):
            watcher.cancel()
