"""What is served (``/model``), the registry's versions, and the hot reload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from model_runner.service.auth import require_admin
from model_runner.service.deps import StateDep
from model_runner.service.errors import ModelInvalid, ModelNotLoaded, Unprocessable
from model_runner.service.model_manager import ReloadOutcome
from model_runner.service.text_input import SanitizingRoute

router = APIRouter(tags=["model"], route_class=SanitizingRoute)

# Figures of a version's training run that are comparable across versions (same frozen eval split).
_VERSION_METRICS = ("macro_recall", "macro_f1", "accuracy", "macro_precision", "ece")
_PER_CLASS = ("recall_", "precision_", "f1_")


class ServedModelView(BaseModel):
    """A served model as ``ServedModel.describe`` reports it."""

    task: str
    name: str
    version: str
    labels: list[str]
    quantized: bool
    serving: Literal["int8", "fp32"]
    runtime: Literal["torch", "onnxruntime"]
    metrics: dict[str, Any] = Field(description="Headline figures of the model's training run.")
    adapter: str | None
    base_model: dict[str, Any] | None = Field(description="The encoder: its id and revision.")
    mlflow_run_id: str | None
    source: str
    max_length: int
    loaded_at: str = Field(description="ISO 8601 time")


class TasksView(BaseModel):
    tasks: dict[str, ServedModelView | None] = Field(description="null: nothing serves the task yet")
    errors: dict[str, str] = Field(description="The last load error of a task, if any.")


class VersionView(BaseModel):
    version: str
    aliases: list[str]
    created_at: str = Field(description="ISO 8601 time")
    run_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float]


class VersionsView(BaseModel):
    task: str
    name: str
    versions: list[VersionView]


class ReloadResultView(BaseModel):
    task: str
    reloaded: bool
    version: str | None
    previous: str | None
    message: str
    outcome: ReloadOutcome


class ReloadView(BaseModel):
    results: list[ReloadResultView]


def _check_task(state, task: str) -> None:
    if task not in state.models.batchers:
        raise Unprocessable(f"unknown task {task!r}; served tasks: {', '.join(state.models.tasks)}")


@router.get("/model", response_model=ServedModelView, summary="The model serving a task")
async def model(state: StateDep, task: str = Query("sentiment")):
    _check_task(state, task)
    served = state.models.get(task)
    if served is None:
        why = state.models.last_error.get(task) or "still loading"
        raise ModelNotLoaded(f"no model is loaded for task {task!r}: {why}", headers={"Retry-After": "30"})
    return served.describe()


@router.get(
    "/model/tasks", response_model=TasksView, summary="Every task and what serves it (null: nothing yet)"
)
async def tasks(state: StateDep):
    return {
        "tasks": {t: (m.describe() if (m := state.models.get(t)) else None) for t in state.models.tasks},
        "errors": dict(state.models.last_error),
    }


@router.get(
    "/model/versions",
    response_model=VersionsView,
    summary="Registered versions of a task's model, newest first, with metrics",
)
async def versions(state: StateDep, task: str = Query("sentiment"), limit: int = Query(10, ge=1, le=100)):
    _check_task(state, task)
    return await run_in_threadpool(_versions, state.components.registry, task, limit)


def _versions(registry, task: str, limit: int) -> dict:
    out = []
    for info in registry.versions(task, limit=limit):
        metrics = registry.run_metrics(info.run_id) if info.run_id else {}
        keep = {k: v for k, v in metrics.items() if k in _VERSION_METRICS or k.startswith(_PER_CLASS)}
        out.append(
            {
                "version": info.version,
                "aliases": info.aliases,
                "created_at": datetime.fromtimestamp(info.created_at / 1000, UTC).isoformat(),
                "run_id": info.run_id,
                "tags": {k: v for k, v in info.tags.items() if k.startswith(("gate.", "task", "adapter"))},
                "metrics": keep,
            }
        )
    return {"task": task, "name": registry.model_name(task), "versions": out}


@router.post(
    "/model/reload",
    response_model=ReloadView,
    dependencies=[Depends(require_admin)],
    summary="Load the current champion(s) beside the served model, validate, then swap atomically",
)
async def reload(state: StateDep, task: str | None = Query(None)):
    if task is not None:
        _check_task(state, task)
    results = [await state.reload(t) for t in ([task] if task else state.models.tasks)]
    body = [r.to_dict() for r in results]
    failed = [r for r in results if r.outcome.refused]
    if failed:
        raise ModelInvalid("; ".join(f"{r.task}: {r.message}" for r in failed), results=body)
    return {"results": body}
