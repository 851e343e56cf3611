"""Training jobs: start one (202), follow it, cancel it. The work runs in a separate process."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_runner.service.auth import require_admin
from model_runner.service.deps import StateDep, declared_task
from model_runner.service.errors import Conflict, NotFound, Unprocessable
from model_runner.service.schemas import TaskName
from model_runner.settings import Settings
from model_runner.store.jobs import HubPush, Job, ReloadRecord
from model_runner.tasks import declared_tasks, default_task, parse_label_map

router = APIRouter(tags=["training"])

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")
_DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet", ".txt"}


def allowed_data_roots(settings) -> list[Path]:
    """Folders whose files a training request may name (``train_data_roots``, symlinks resolved)."""
    if settings.train_data_roots.strip():
        roots = [Path(r.strip()).expanduser() for r in settings.train_data_roots.split(",") if r.strip()]
    else:
        roots = [Path("../shared/datasets"), settings.resolved_home()]
        for task in declared_tasks(settings).values():
            path = Path(task.data).expanduser()
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


_COLUMN = r"^[^\x00-\x1f]{1,200}$"


class TrainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"adapters": ["linear", "lora"], "folds": 5},
                {
                    "task": "sentiment",
                    "dataset": "../shared/datasets/sentiment140.csv",
                    "label_map": {"0": "negative", "2": "neutral", "4": "positive"},
                    "text_column": "tweet",
                    "label_column": "polarity",
                },
            ]
        },
    )
    task: TaskName | None = Field(None, description="A declared task (`GET /tasks`); default: the first.")
    dataset: str | None = Field(
        None, min_length=1, max_length=1000, description="Path on the service host or a Hub dataset id."
    )
    label_map: (
        dict[
            Annotated[str, Field(min_length=1, max_length=100)],
            Annotated[str, Field(min_length=1, max_length=100)],
        ]
        | None
    ) = Field(
        None,
        max_length=1000,
        description='Raw label -> class name, e.g. Sentiment140\'s {"0": "negative", "4": "positive"};'
        " replaces the task's map for this job. Integer labels nothing names are refused (422 on the job).",
    )
    text_column: str | None = Field(
        None, pattern=_COLUMN, description="Field holding the text (default: text)."
    )
    label_column: str | None = Field(
        None, pattern=_COLUMN, description="Field holding the label (default: label)."
    )
    adapters: list[Literal["linear", "mlp", "lora", "finetune", "distill"]] | None = Field(None, min_length=1)
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

    @field_validator("label_map")
    @classmethod
    def _label_map(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return parse_label_map(value) if value is not None else None


class JobView(BaseModel):
    """A training job as the API shows it: the job row plus its typed result."""

    job_id: str
    task: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str | None
    detail: str | None = Field(
        None, description="Where in its stage the job is, e.g. 'epoch 2/3, batch 120/400, loss 0.412'."
    )
    progress: float
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    model_version: str | None
    promoted: bool | None
    gate: dict[str, Any] | None
    mlflow_run_id: str | None
    mlflow_run_url: str | None
    hub: HubPush | None
    hub_retry: HubPush | None
    reload: ReloadRecord | None
    # what the reconciliation after the job found: the champion, what is served, whether the alias
    # moved during the job (even when the job failed afterwards)
    champion_version: str | None
    served_version: str | None
    settled: bool = Field(description="The job ended and the service reconciled what it serves.")
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, settings: Settings) -> JobView:
        result = job.result
        url = None
        if result.mlflow_run_id and settings.mlflow_ui_url:
            experiment = result.experiment_id or "0"
            url = (
                f"{settings.mlflow_ui_url.rstrip('/')}/#/experiments/{experiment}/runs/{result.mlflow_run_id}"
            )
        return cls(
            job_id=job.id,
            task=job.task,
            state=job.state,
            stage=job.stage,
            detail=job.detail,
            progress=round(float(job.progress), 4),
            params=job.params or {},
            metrics=job.metrics,
            model_version=job.model_version or result.model_version,
            promoted=result.promoted,
            gate=result.gate,
            mlflow_run_id=result.mlflow_run_id,
            mlflow_run_url=url,
            hub=result.hub,
            hub_retry=result.hub_retry,
            reload=result.reload,
            champion_version=result.champion_version,
            served_version=result.served_version,
            settled=job.settled,
            error=job.error,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobList(BaseModel):
    jobs: list[JobView]


class JobAccepted(BaseModel):
    job_id: str


@router.post(
    "/train",
    status_code=202,
    response_model=JobAccepted,
    dependencies=[Depends(require_admin)],
    summary="Start a training job (cross-validation, final fit, gate, Hub push, hot reload)",
    responses={409: {}},
)
async def start(state: StateDep, response: Response, body: TrainRequest | None = Body(None)):
    request = body or TrainRequest()
    task = declared_task(state.settings, request.task or default_task(state.settings))
    params = request.model_dump(exclude_none=True, exclude={"task"})
    if request.dataset is not None:
        params["dataset"] = check_dataset(request.dataset, state.settings)
    job = await state.jobs.submit(task, params)  # ActiveJobExists: 409 naming the job
    response.headers["Location"] = f"/train/{job.id}"
    return JobAccepted(job_id=job.id)


class TaskView(BaseModel):
    """A declared task (the tasks file): what it trains on and how its data reads."""

    name: str
    data: str
    metric: str
    labels: list[str] = Field(description="The classes in order; empty = whatever the data holds.")
    label_map: dict[str, str]
    text_column: str
    label_column: str
    warmup: str
    schedule: str = Field(description="Airflow schedule of its retrain; empty = only when triggered.")
    served: bool = Field(description="This service loads and serves the task's model.")


class TaskList(BaseModel):
    tasks: list[TaskView]
    default: str


@router.get("/tasks", response_model=TaskList, summary="The declared tasks (the tasks file), in order")
async def tasks(state: StateDep):
    declared = declared_tasks(state.settings)
    served = set(state.settings.task_list())
    return TaskList(
        tasks=[
            TaskView(
                **{**asdict(t), "labels": list(t.labels), "label_map": dict(t.label_map)},
                served=name in served,
            )
            for name, t in declared.items()
        ],
        default=next(iter(declared)),
    )


@router.get("/train", response_model=JobList, summary="Recent training jobs, newest first")
async def recent(state: StateDep, limit: int = Query(20, ge=1, le=200)):
    jobs = await run_in_threadpool(state.jobs.store.recent, limit)
    return JobList(jobs=[JobView.of(j, state.settings) for j in jobs])


@router.get("/train/{job_id}", response_model=JobView, summary="State, stage, progress and outcome of a job")
async def status(state: StateDep, job_id: str):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    return JobView.of(job, state.settings)


@router.post(
    "/train/{job_id}/cancel",
    response_model=JobView,
    dependencies=[Depends(require_admin)],
    summary="Cancel a job",
)
async def cancel(state: StateDep, job_id: str):
    job = await run_in_threadpool(state.jobs.store.get, job_id)
    if job is None:
        raise NotFound(f"no training job {job_id}")
    if job.state not in ("queued", "running"):
        raise Conflict(f"training job {job_id} already ended ({job.state})", job_id=job_id)
    job = await run_in_threadpool(state.jobs.store.request_cancel, job_id)
    return JobView.of(job, state.settings)
