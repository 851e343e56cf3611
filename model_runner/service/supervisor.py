"""Runs training jobs in a child process and reacts when they end (reconciliation: reload, Hub push).

Roles (``settings.role``): ``all`` runs the jobs it is asked for itself (the job is claimed at birth);
``serve`` only queues them in Postgres; ``train`` (and ``all``, for jobs others queued) claims queued
jobs with ``FOR UPDATE SKIP LOCKED`` and a lease, one at a time, woken by ``NOTIFY tweetpulse_jobs``
or its poll (``job_claim_poll_s``). A serving replica never starts a worker and never adopts one.

The child is a new session (its own process group), so a cancel that outlives its grace period
stops the worker together with its CV pool; ``/inference`` never shares a process with training.

Faults the supervisor survives:

- **Database errors.** The watcher keeps polling the worker process; each database call is retried
  with backoff (up to ``job_db_retry_max_s`` between tries) until the database answers, and then the
  job is ended and reconciled as usual. A watcher never dies and leaves a job ``running``.
- **A dead worker.** Every job carries a lease its worker renews; an active job whose lease expired
  is failed by a periodic sweep and by ``submit`` before it answers 409.
- **A service restart.** ``recover`` looks for each active job's worker by pid, host and process
  start time. A worker alive on this host is adopted (watched again, the job goes on; or, with
  ``job_recover_mode=kill``, its process group is killed and the job fails); a job on another host is
  left alone while its lease is live and failed once it expired; a job without a live worker fails.
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
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import anyio.from_thread
from fastapi.concurrency import run_in_threadpool

from model_runner.jobs.train_worker import dump_settings, process_start_time
from model_runner.store.jobs import ActiveJobExists, Job, JobStore
from model_runner.wiring import Components

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 30.0


class WorkerHandle:
    """A worker process: one this service started (a ``Popen``) or one it adopted after a restart."""

    def __init__(self, pid: int, *, popen: subprocess.Popen | None = None, started_at: float | None = None):
        self.pid = pid
        self.popen = popen
        self.started_at = started_at if started_at is not None else process_start_time(pid)
        self.adopted = popen is None

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        now = process_start_time(self.pid)
        return now is not None and self.started_at is not None and abs(now - self.started_at) < 1.0

    def signal_group(self, sig: int) -> None:
        """Signal the worker's process group (the worker leads its own session), if it still lives."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def same_process(pid: int | None, started_at: datetime | None) -> bool:
    """``pid`` is alive on this host and is the process that started at ``started_at``."""
    if not pid or started_at is None:
        return False
    now = process_start_time(pid)
    return now is not None and abs(now - started_at.timestamp()) < 1.0


def supervisor_alive(claimed_by: str | None, me: str) -> bool:
    """``claimed_by`` ("host:pid:start-time") names a live process of this host other than ``me``."""
    if not claimed_by or claimed_by == me:
        return False
    host, _, rest = claimed_by.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or not started:
        return False
    if int(pid) == os.getpid():
        return False
    now = process_start_time(int(pid))
    try:
        return now is not None and abs(now - float(started)) < 1.0
    except ValueError:
        return False


class TrainingSupervisor:
    def __init__(self, components: Components, *, on_finished=None, on_state=None):
        self.settings = components.settings
        self._components = components
        # async callable(job | None) -> dict: after a job (any end state) the reconciliation (reload,
        # served version, Hub push retry) whose dict joins the job's result; None: the start-up sweep
        self._on_finished = on_finished
        self._on_state = on_state
        self._procs: dict[str, WorkerHandle] = {}
        self._watchers: set[asyncio.Task] = set()
        self._watching: set[str] = set()
        self._sweeper: asyncio.Task | None = None
        self._claimer: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.host = socket.gethostname()
        self.trains = self.settings.role in ("all", "train")
        # who supervises a job's worker: a neighbour on this host that is alive keeps its workers
        started = process_start_time(os.getpid())
        self.identity = (
            f"{self.host}:{os.getpid()}:{started:.2f}" if started else f"{self.host}:{os.getpid()}"
        )
        self.log_dir = self.settings.resolved_home() / "logs" / "jobs"

    @property
    def store(self) -> JobStore:
        # built on first use: the database may still be coming up when the supervisor is created
        return self._components.jobs

    # --- start-up ------------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """At start-up: adopt (or kill) this host's surviving workers, fail jobs nobody runs any more.

        Returns the ids of the jobs it failed. Runs in a worker thread; it starts the watchers and the
        lease sweep on the event loop when it can (else the next ``submit`` does).
        """
        failed: list[str] = []
        for job in self.store.active_jobs() if self.trains else ():
            if job.id in self._procs:
                continue
            reason = self._recover_one(job)
            if reason and self.store.fail(job.id, reason):
                log.warning("training job %s: %s", job.id, reason)
                failed.append(job.id)
        self._start_background_from_thread()
        return failed

    def _recover_one(self, job: Job) -> str | None:
        """What to do with an active job found at start-up: None = leave it (adopted, remote, queued
        for a train process, or supervised by another live process of this host)."""
        if job.state == "queued" and job.lease_token is None:
            return None  # waiting in the queue: a train process claims it (or its queue timeout fails it)
        if supervisor_alive(job.claimed_by, self.identity):
            log.info("training job %s is supervised by %s: left alone", job.id, job.claimed_by)
            return None
        if job.worker_host and job.worker_host != self.host:
            if self.store.lease_live(job):
                log.info("training job %s runs on %s with a live lease: left alone", job.id, job.worker_host)
                return None
            return f"interrupted: the worker on {job.worker_host} stopped renewing its lease"
        if job.worker_pid and same_process(job.worker_pid, job.worker_started_at):
            handle = WorkerHandle(job.worker_pid, started_at=job.worker_started_at.timestamp())
            if self.settings.job_recover_mode == "adopt":
                self._procs[job.id] = handle
                log.warning("training job %s: adopted its surviving worker (pid %d)", job.id, job.worker_pid)
                return None
            self._stop_worker(handle, self.settings.train_worker_stop_grace_s)
            return (
                f"interrupted: the service on {self.host} restarted; its surviving worker "
                f"(pid {job.worker_pid}) was stopped"
            )
        return f"interrupted: the service on {self.host} restarted while the job was active"

    def _start_background_from_thread(self) -> None:
        try:
            anyio.from_thread.run_sync(self._start_background)
            return
        except Exception:  # not called from the event loop's worker thread
            pass
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._start_background()

    def _start_background(self) -> None:
        """Watch adopted workers and start the lease sweep (idempotent; on the event loop)."""
        if self._stopping:
            return
        for job_id in list(self._procs):
            self._start_watcher(job_id)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="job-sweep")
        if self.trains and (self._claimer is None or self._claimer.done()):
            self._claimer = asyncio.create_task(self._claim_loop(), name="job-claim")

    def _start_watcher(self, job_id: str) -> None:
        if job_id in self._watching:
            return
        self._watching.add(job_id)
        watcher = asyncio.create_task(self._watch(job_id), name=f"job-{job_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def log_path(self, job_id: str) -> Path:
        return self.log_dir / f"{job_id}.log"

    # --- submitting ----------------------------------------------------------------------------------
    def _own_live_jobs(self) -> list[str]:
        return [job_id for job_id, handle in self._procs.items() if handle.alive()]

    def fail_expired(self) -> list[str]:
        """Fail active jobs whose lease expired, except those whose worker this service sees alive."""
        ids = self.store.fail_expired(exclude=self._own_live_jobs())
        if ids:
            log.warning("failed %d training job(s) whose lease expired: %s", len(ids), ", ".join(ids))
        return ids

    def _create(self, task: str, params: dict, token: str | None) -> Job:
        def create() -> Job:
            return self.store.create(
                task,
                params,
                token=token,
                claimed_by=self.identity,
                queue_timeout_s=self.settings.job_queue_timeout_s,
            )

        try:
            return create()
        except ActiveJobExists:
            # the job in the way may be one whose worker died: its lease tells
            if not self.fail_expired():
                raise
            return create()

    async def submit(self, task: str, params: dict) -> Job:
        """Queue a job; a process that trains claims it at birth and starts its worker at once, a
        serving replica leaves it to the ``train`` processes (``NOTIFY`` wakes them)."""
        self._start_background()
        token = uuid.uuid4().hex if self.trains else None
        job = await run_in_threadpool(self._create, task, params, token)
        if token is not None:
            await self._launch(job.id, token)
        return job

    async def _launch(self, job_id: str, token: str) -> None:
        """Start the worker of a job this process holds (``token``) and watch it."""
        try:
            handle = self._spawn(job_id, token)
        except OSError as exc:
            await run_in_threadpool(
                self.store.update,
                job_id,
                state="failed",
                error=f"could not start the worker: {type(exc).__name__}",
                finished_at=datetime.now(UTC),
            )
            raise
        started = datetime.fromtimestamp(handle.started_at, UTC) if handle.started_at else None
        with contextlib.suppress(Exception):  # the worker records the same when it claims the job
            await run_in_threadpool(
                self.store.update,
                job_id,
                only_if_active=True,
                worker_pid=handle.pid,
                worker_host=self.host,
                worker_started_at=started,
            )
        self._start_watcher(job_id)

    # --- the queue (role train, and all) ----------------------------------------------------------
    def wake(self) -> None:
        """A job was queued (``NOTIFY tweetpulse_jobs``): look for it now."""
        self._wake.set()

    async def _claim_loop(self) -> None:
        """Claim queued jobs, one at a time, while no worker of this process runs."""
        while not self._stopping:
            self._wake.clear()
            if not self.worker_running:
                token = uuid.uuid4().hex
                try:
                    job = await run_in_threadpool(
                        self.store.claim_next, token, host=self.host, claimed_by=self.identity
                    )
                except Exception as exc:
                    log.warning("claiming a queued job failed (%s: %s)", type(exc).__name__, str(exc)[:200])
                    job = None
                if job is not None:
                    log.info("training job %s claimed from the queue", job.id)
                    try:
                        await self._launch(job.id, token)
                    except OSError:
                        log.exception("could not start the worker of job %s", job.id)
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.job_claim_poll_s)

    @property
    def worker_running(self) -> bool:
        """A training worker started (or adopted) by this service is still alive."""
        return any(handle.alive() for handle in self._procs.values())

    def _spawn(self, job_id: str, token: str) -> WorkerHandle:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path(job_id).open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "model_runner.jobs.train_worker", job_id, token],
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
        handle = WorkerHandle(proc.pid, popen=proc)
        self._procs[job_id] = handle
        log.info("training job %s started in process %d (log %s)", job_id, proc.pid, self.log_path(job_id))
        return handle

    # --- watching ------------------------------------------------------------------------------------
    async def _db(self, fn, *args, what: str, **kwargs):
        """Run a job-store call in a thread until it succeeds: database errors are retried with
        exponential backoff (0.5 s doubling to ``job_db_retry_max_s``), forever; cancel to give up."""
        delay, failures, first_failure = 0.5, 0, 0.0
        while True:
            try:
                result = await run_in_threadpool(fn, *args, **kwargs)
                if failures:
                    log.warning(
                        "%s: the database answers again after %.1fs", what, time.monotonic() - first_failure
                    )
                return result
            except Exception as exc:
                failures += 1
                first_failure = first_failure or time.monotonic()
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "%s failed (%s: %s); retrying with backoff", what, type(exc).__name__, str(exc)[:200]
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.job_db_retry_max_s)

    async def _watch(self, job_id: str) -> None:
        try:
            await self._watch_inner(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected: say so, the sweep still fails the job once its lease expires
            log.exception("the watcher of training job %s failed", job_id)
        finally:
            self._watching.discard(job_id)

    async def _watch_inner(self, job_id: str) -> None:
        handle = self._procs[job_id]
        stop_seen_at: float | None = None
        loop = asyncio.get_running_loop()
        db_down_since: float | None = None
        while handle.alive():
            await asyncio.sleep(self.settings.job_poll_s)
            try:
                job = await run_in_threadpool(self.store.get, job_id)
            except Exception as exc:  # keep watching the process; the database will be back
                if db_down_since is None:
                    db_down_since = loop.time()
                    log.warning(
                        "job %s: cannot read the job (%s: %s); still watching the worker",
                        job_id,
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                continue
            if db_down_since is not None:
                log.warning(
                    "job %s: the database answers again after %.1fs", job_id, loop.time() - db_down_since
                )
                db_down_since = None
            if self._on_state and job:
                self._on_state(job)
            # a cancel request, or the job ended by someone else (its lease expired) while it still runs
            if job and (job.cancel_requested or job.state not in ("queued", "running")):
                stop_seen_at = stop_seen_at or loop.time()
                if loop.time() - stop_seen_at > CANCEL_GRACE_S:
                    log.warning("job %s did not stop within %.0fs: terminating it", job_id, CANCEL_GRACE_S)
                    handle.signal_group(signal.SIGTERM)
        self._procs.pop(job_id, None)
        job = await self._db(self.store.get, job_id, what=f"reading job {job_id}")
        if job is None:
            return
        if job.state in ("queued", "running"):
            # the worker died without recording an outcome (crash, OOM kill, terminate)
            code = handle.returncode
            state = "cancelled" if job.cancel_requested else "failed"
            if job.cancel_requested:
                error = "cancelled on request"
            elif code is None:
                error = "the adopted worker exited without recording an outcome"
            else:
                error = f"worker exited with code {code}; see {self.log_path(job_id)}"
            await self._db(
                self.store.update,
                job_id,
                only_if_active=True,
                state=state,
                error=error,
                finished_at=datetime.now(UTC),
                what=f"ending job {job_id}",
            )
            job = await self._db(self.store.get, job_id, what=f"reading job {job_id}")
        if self._on_state and job:
            self._on_state(job)
        await self._reconcile(job)

    async def _reconcile(self, job: Job) -> None:
        """Whatever the job's end: the served model converges to the champion, the job says so."""
        if not self._on_finished or self._stopping:
            return
        try:
            info = await self._on_finished(job)
        except Exception as exc:
            log.exception("reconciliation after job %s failed", job.id)
            info = {"reload": {"reloaded": False, "message": f"reconciliation failed: {type(exc).__name__}"}}
        if info:
            await self._db(self.store.merge_result, job.id, info, what=f"recording job {job.id}")

    async def _sweep(self) -> None:
        """Fail jobs whose lease expired; beside it, once, the start-up reconciliation (Hub pushes)."""
        startup = asyncio.create_task(self._startup_reconcile(), name="job-startup-reconcile")
        try:
            while True:
                await asyncio.sleep(self.settings.job_sweep_s)
                try:
                    await run_in_threadpool(self.fail_expired)
                except Exception as exc:
                    log.warning("lease sweep skipped (%s: %s)", type(exc).__name__, str(exc)[:200])
        finally:
            startup.cancel()

    async def _startup_reconcile(self) -> None:
        if self._on_finished:
            try:
                await self._on_finished(None)
            except Exception:
                log.exception("start-up reconciliation failed")

    # --- stopping ------------------------------------------------------------------------------------
    def _stop_worker(self, handle: WorkerHandle, grace_s: float) -> None:
        """SIGTERM to the worker's process group, SIGKILL after ``grace_s`` (blocking; call in a thread)."""
        handle.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while handle.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if handle.alive():
            log.warning("worker %d ignored SIGTERM for %.0fs: killing its process group", handle.pid, grace_s)
            handle.signal_group(signal.SIGKILL)
            if handle.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    handle.popen.wait(timeout=5)

    async def shutdown(self) -> None:
        """Stop running workers: SIGTERM to each worker's process group, then SIGKILL after
        ``train_worker_stop_grace_s``; their jobs end as failed/interrupted, a promotion stands."""
        self._stopping = True
        for task in (self._sweeper, self._claimer):
            if task is not None:
                task.cancel()
        for watcher in list(self._watchers):
            watcher.cancel()
        grace = self.settings.train_worker_stop_grace_s
        for job_id, handle in list(self._procs.items()):
            log.warning("service stopping: terminating training job %s", job_id)
            await run_in_threadpool(self._stop_worker, handle, grace)
            try:
                await run_in_threadpool(
                    self.store.update,
                    job_id,
                    only_if_active=True,
                    state="failed",
                    error="interrupted: the service stopped",
                    finished_at=datetime.now(UTC),
                )
            except Exception as exc:  # the next start-up (or the lease sweep) ends it instead
                log.warning("could not end job %s (%s)", job_id, type(exc).__name__)
            self._procs.pop(job_id, None)
        background = [t for t in (self._sweeper, self._claimer) if t is not None]
        await asyncio.gather(*self._watchers, *background, return_exceptions=True)
