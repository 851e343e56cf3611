"""Training jobs: start one (202), follow it, cancel it. The work runs in a separate process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_runner.jobs.training_jobs import ActiveJobExists, Job
from model_runner.service.auth import require_admin
from model_runner.service.deps import StateDep
from model_runner.service.errors import Conflict, NotFound, Unprocessable

router = APIRouter(tags=["training"])

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")
_DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet", ".txt"}


def allowed_data_roots(settings) -> list[Path]:
    """Folders whose files a training request may name (``train_data_roots``, symlinks resolved)."""
    if settings.train_data_roots.strip():
        roots = [Path(r.strip()).expanduser() for r in settings.train_data_roots.split(",") if r.strip()]
    else:
        roots = [Path("../shared/datasets"), settings.resolved_home()]
        for default in (settings.sentiment_data, settings.emotion_data):
            path = Path(default).expanduser()
            if path.exists():
                roots.append(path.parent)
    return list(dict.fromkeys(root.resolve() for root in roots))


def check_dataset(value: str, settings) -> str:
    """A path under an allowed root (returned resolved: the worker reads what was checked) or a Hub
    dataset id; anything else is a 422 that does not say whether the path exists."""
    try:
        path = Path(value).expanduser()
        exists = path.exists()
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError):
        raise Unprocessable("dataset: not a usable path or Hub dataset id") from None
    if exists:
        if any(resolved.is_relative_to(root) for root in allowed_data_roots(settings)):
            return str(resolved)
        raise Unprocessable(
            "dataset: only files under the allowed data folders (setting train_data_roots) or a Hub "
            "dataset id 'owner/name' may be used"
        )
    if _HUB_ID.match(value) and Path(value.split(":")[0]).suffix.lower() not in _DATA_SUFFIXES:
        return value
    raise Unprocessable(f"dataset {value!r} is neither an existing path nor a Hub dataset id")


class TrainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"adapters": ["linear", "lora"], "folds": 5}]},
    )
    task: Literal["sentiment", "emotion"] = "sentiment"
    dataset: str | None = Field(
        None, min_length=1, max_length=1000, description="Path on the service host or a Hub dataset id."
    )
    adapters: list[Literal["linear", "mlp", "lora", "finetune"]] | None = Field(None, min_length=1)
    folds: int | None = Field(None, ge=2, le=20)
    sample_fraction: float | None = Field(None, gt=0, le=1, description="Train on a stratified share.")
    include_feedback: bool = Field(True, description="Add labelled feedback rows to the training data.")

    @field_validator("adapters")
    @classmethod
    def _unique_adapters(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            duplicates = sorted({a for a in value if value.count(a) > 1})
            raise ValueError(f"each adapter may be named once; repeated: {', '.join(duplicates)}")
        return value


def job_view(job: Job, settings) -> dict:
    result = job.result or {}
    run_id = result.get("mlflow_run_id")
    url = None
    if run_id and settings.mlflow_ui_url:
        experiment = result.get("experiment_id", "0")
        url = f"{settings.mlflow_ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return {
        "job_id": job.id,
        "task": job.task,
        "state": job.state,
        "stage": job.stage,
        "progress": round(float(job.progress), 4),
        "params": job.params,
        "metrics": job.metrics,
        "model_version": job.model_version or result.get("model_version"),
        "promoted": result.get("promoted"),
        "gate": result.get("gate"),
        "mlflow_run_id": run_id,
        "mlflow_run_url": url,
        "hub": result.get("hub"),
        "hub_retry": result.get("hub_retry"),
        "reload": result.get("reload"),
        # what the reconciliation after the job found: the champion, what is served, whether the
        # alias moved during the job (even when the job failed afterwards)
        "champion_version": result.get("champion_version"),
        "served_version": result.get("served_version"),
        "settled": job.state not in ("queued", "running") and bool(result.get("reconciled_at")),
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@router.post(
    "/train",
    status_code=202,
    dependencies=[Depends(require_admin)],
    summary="Start a training job (cross-validation, final fit, gate, Hub push, hot reload)",
    responses={202: {"content": {"application/json": {"example": {"job_id": "…"}}}}, 409: {}},
)
async def start(state: StateDep, body: TrainRequest | None = Body(None)):
    request = body or TrainRequest()
    params = request.model_dump(exclude_none=True, exclude={"task"})
    if request.dataset is not None:
        params["dataset"] = check_dataset(request.dataset, state.settings)
    try:
        job = await state.jobs.submit(request.task, params)
    except ActiveJobExists as exc:
        raise Conflict(str(exc), job_id=exc.job_id) from None
    return JSONResponse({"job_id": job.id}, status_code=202, headers={"Location": f"/train/{job.id}"})


@router.get("/train", summary="Recent training jobs, newest first")
async def recent(state: StateDep, limit: int = Query(20, ge=1, le=200)):
    jobs = await run_in_threadpool(state.jobs.store.recent, limit)
    return {"jobs": [job_view(j, state.settings) for j in jobs]}


@router.get("/train/{job_id}", summary="State, stage, progress and outcome of a job")
async def status(state: StateDep, job_id: str):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    return job_view(job, state.settings)


@router.post("/train/{job_id}/cancel", dependencies=[Depends(require_admin)], summary="Cancel a job")
async def cancel(state: StateDep, job_id: str):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    if job.state not in ("queued", "running"):
        raise Conflict(f"training job {job_id} already ended ({job.state})", job_id=job_id)
    job = await run_in_threadpool(state.jobs.store.request_cancel, job_id)
    return job_view(job, state.settings)
