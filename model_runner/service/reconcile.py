"""After a training job, whatever its end: the served model converges to the registry's champion.

A job may fail after the ``champion`` alias moved (MLflow errors after the alias write, the worker
SIGTERMed or killed there, the database gone for the final write). The alias is the truth, so the
service does not trust the job's state: when a job ends in any state it reloads the task (a no-op
when the champion is already served), records in the job's result what is really served
(``served_version``), the champion (``champion_version``) and whether the alias moved during the job
(``promoted``), and pushes the champion to the Hub when that push has not happened yet (the champion
version carries no ``hub.commit_id`` tag for the configured repo): ``hub_retry`` in the result, next
to the worker's own attempt in ``hub``. At start-up the same push check
runs for every served task, and jobs that ended while no service was reconciling them are recorded.

With ``model_source=hub`` the service serves the Hub, not the registry: the start-up does not read
the registry at all (a Space has no MLflow); after a job the missing push is still retried (so the
Hub gets the champion), then the task is reloaded from the Hub, and ``served_version`` is what the
Hub commit serves.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from types import SimpleNamespace

from fastapi.concurrency import run_in_threadpool

from model_runner.jobs.publish import hub_repo_for, publish_to_hub
from model_runner.settings import Settings
from model_runner.store.jobs import HubPush, Job, JobResult, ReloadRecord
from model_runner.tasks import get_task
from model_runner.wiring import Components

log = logging.getLogger(__name__)

RELOAD_ATTEMPTS = 3


def champion_of(components: Components, task: str):
    return components.registry.champion(task)


def push_pending(settings: Settings, task: str, champion) -> bool:
    """The Hub is configured and the champion version has not been pushed to its repo."""
    repo = hub_repo_for(settings, task) if champion else None
    if champion is None or repo is None:
        return False
    tags = champion.tags or {}
    return not (tags.get("hub.commit_id") and tags.get("hub.repo_id") == repo)


def push_champion(components: Components, task: str, champion) -> dict:
    """Push a registered champion version (as the worker would have after the promotion)."""
    settings = components.settings
    metrics: dict = {}
    if champion.run_id:
        try:
            metrics = components.registry.run_metrics(champion.run_id)
        except Exception as exc:  # the card says less; the push still happens
            log.warning("metrics of %s version %s unknown (%s)", task, champion.version, type(exc).__name__)
    outcome = SimpleNamespace(
        task=task,
        model_version=str(champion.version),
        run_id=champion.run_id,
        metric=get_task(task, settings).metric,
        metrics=metrics,
        data={},
        quantization={},
    )
    return publish_to_hub(components, outcome)


def _promoted(result: JobResult, champion_version: str | None, job_version: str | None) -> bool:
    if result.promoted:
        return True
    if champion_version is None:
        return False
    if job_version and str(job_version) == champion_version:
        return True
    # one job at a time: the alias moved during this job, so this job moved it (even when it died
    # before it could say so)
    recorded = "champion_before" in result.model_fields_set  # None there means: no champion before
    return recorded and result.champion_before != champion_version


def _hub_mode(state) -> bool:
    return getattr(state.settings, "model_source", "registry") == "hub"


async def after_job(state, job: Job, *, at_startup: bool = False) -> JobResult:
    """Reload the job's task if its champion is not served, retry a missing Hub push; what the job's
    result records about it."""
    if _hub_mode(state):
        return await _after_job_hub(state, job, registry=not at_startup)
    settings = state.settings
    task = job.task
    result = job.result
    try:
        champion = await run_in_threadpool(champion_of, state.components, task)
    except Exception as exc:
        log.warning("champion of %s unknown after job %s (%s)", task, job.id, type(exc).__name__)
        champion = None
    champion_version = str(champion.version) if champion else None
    promoted = _promoted(result, champion_version, job.model_version)
    info = JobResult(champion_version=champion_version, promoted=promoted)
    if promoted and champion_version and not result.model_version:
        info.model_version = str(job.model_version or champion_version)
    if task in state.models.tasks and getattr(state, "serves", True):
        reload = None
        for attempt in range(RELOAD_ATTEMPTS):
            reload = ReloadRecord(**(await state.reload(task)).to_dict())
            served = state.models.get(task)
            if champion_version is None or (served and str(served.version) == champion_version):
                break
            if attempt + 1 < RELOAD_ATTEMPTS:
                await asyncio.sleep(2.0 * (attempt + 1))
        info.reload = reload
    else:
        info.reload = ReloadRecord(task=task, message=f"task {task} is not served by this process")
    served = state.models.get(task)
    info.served_version = str(served.version) if served else None
    if champion is not None and push_pending(settings, task, champion):
        log.warning("%s champion version %s is not on the Hub yet: pushing it", task, champion_version)
        try:
            hub = await run_in_threadpool(push_champion, state.components, task, champion)
        except Exception as exc:
            hub = {"pushed": False, "error": f"{type(exc).__name__}"}
        info.hub_retry = HubPush(**{**hub, "version": champion_version})
    info.reconciled_at = datetime.now(UTC)
    return info


async def _after_job_hub(state, job: Job, *, registry: bool = True) -> JobResult:
    """Hub mode: the champion (if the registry answers) is pushed when the Hub misses it, then the task
    follows the Hub (its repo's revision), not the registry. ``registry=False`` (start-up): the
    registry is not read at all."""
    task = job.task
    result = job.result
    champion = None
    try:
        if registry:
            champion = await run_in_threadpool(champion_of, state.components, task)
    except Exception as exc:
        log.warning("champion of %s unknown after job %s (%s)", task, job.id, type(exc).__name__)
    champion_version = str(champion.version) if champion else None
    promoted = _promoted(result, champion_version, job.model_version)
    info = JobResult(champion_version=champion_version, promoted=promoted)
    if promoted and champion_version and not result.model_version:
        info.model_version = str(job.model_version or champion_version)
    if champion is not None and push_pending(state.settings, task, champion):
        log.warning("%s champion version %s is not on the Hub yet: pushing it", task, champion_version)
        try:
            hub = await run_in_threadpool(push_champion, state.components, task, champion)
        except Exception as exc:
            hub = {"pushed": False, "error": f"{type(exc).__name__}"}
        info.hub_retry = HubPush(**{**hub, "version": champion_version})
    if task in state.models.tasks and getattr(state, "serves", True):
        info.reload = ReloadRecord(**(await state.reload(task)).to_dict())
    else:
        info.reload = ReloadRecord(task=task, message=f"task {task} is not served by this process")
    served = state.models.get(task)
    info.served_version = str(served.version) if served else None
    info.reconciled_at = datetime.now(UTC)
    return info


async def at_startup(state) -> None:
    """Once the start-up loaded the champions: push champions the Hub misses, and record the latest
    job if it ended while no service reconciled it."""
    for name in ("startup_done", "models_started"):
        event = getattr(state, name, None)
        if event is not None:
            await event.wait()
    settings = state.settings
    # hub mode: the Hub is the source; the registry (MLflow) is not read at start-up
    for task in [] if _hub_mode(state) else state.models.tasks:
        try:
            champion = await run_in_threadpool(champion_of, state.components, task)
            if champion is not None and push_pending(settings, task, champion):
                log.warning(
                    "start-up: %s champion version %s is not on the Hub: pushing it", task, champion.version
                )
                hub = await run_in_threadpool(push_champion, state.components, task, champion)
                log.info("start-up Hub push of %s version %s: %s", task, champion.version, hub)
        except Exception as exc:
            log.warning("start-up Hub check of %s skipped (%s)", task, type(exc).__name__)
    store = state.jobs.store
    try:
        jobs = await run_in_threadpool(store.recent, 1)
    except Exception as exc:
        log.warning("start-up job reconciliation skipped (%s)", type(exc).__name__)
        return
    for job in jobs:
        if job.state in ("queued", "running") or job.result.reconciled_at is not None:
            continue
        try:
            info = await after_job(state, job, at_startup=True)
            await run_in_threadpool(store.merge_result, job.id, info)
        except Exception as exc:
            log.warning("start-up reconciliation of job %s skipped (%s)", job.id, type(exc).__name__)
