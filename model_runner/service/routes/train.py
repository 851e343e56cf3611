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
from model_runner.service.deps import get_state
from model_runner.service.errors import Conflict, NotFound

router = APIRouter(tags=["training"])

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


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

    @field_validator("dataset")
    @classmethod
    def _dataset_exists(cls, value: str | None) -> str | None:
        if value is None or _HUB_ID.match(value):
            return value
        try:
            exists = Path(value).exists()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte
            exists = False
        if exists:
            return value
        raise ValueError(f"dataset {value!r} is neither an existing path nor a Hub dataset id")


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
        "model_version": job.model_version,
        "promoted": result.get("promoted"),
        "gate": result.get("gate"),
        "mlflow_run_id": run_id,
        "mlflow_run_url": url,
        "hub": result.get("hub"),
        "reload": result.get("reload"),
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
async def start(body: TrainRequest | None = Body(None), state=Depends(get_state)):
    request = body or TrainRequest()
    params = request.model_dump(exclude_none=True, exclude={"task"})
    try:
        job = await state.jobs.submit(request.task, params)
    except ActiveJobExists as exc:
        raise Conflict(str(exc), job_id=exc.job_id) from None
    return JSONResponse({"job_id": job.id}, status_code=202, headers={"Location": f"/train/{job.id}"})


@router.get("/train", summary="Recent training jobs, newest first")
async def recent(limit: int = Query(20, ge=1, le=200), state=Depends(get_state)):
    jobs = await run_in_threadpool(state.jobs.store.recent, limit)
    return {"jobs": [job_view(j, state.settings) for j in jobs]}


@router.get("/train/{job_id}", summary="State, stage, progress and outcome of a job")
async def status(job_id: str, state=Depends(get_state)):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    return job_view(job, state.settings)


@router.post("/train/{job_id}/cancel", dependencies=[Depends(require_admin)], summary="Cancel a job")
async def cancel(job_id: str, state=Depends(get_state)):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    if job.state not in ("queued", "running"):
        raise Conflict(f"training job {job_id} already ended ({job.state})", job_id=job_id)
    job = await run_in_threadpool(state.jobs.store.request_cancel, job_id)
    return job_view(job, state.settings)
