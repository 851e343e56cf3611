"""What is served (``/model``), the registry's versions, and the hot reload (from the registry, or from
the Hub with ``model_source=hub``)."""

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


class HubCommitView(BaseModel):
    """Where a Hub-served model came from (``model_source=hub``)."""

    repo_id: str
    revision: str = Field(description="The revision configured (branch, tag or sha).")
    commit: str = Field(description="The commit sha it resolved to and that serves.")


class RuntimeCandidateView(BaseModel):
    """One runtime measured at load: within the accuracy gate or why not, and how fast."""

    name: str = Field(description="torch, onnxruntime, torch-int8, onnxruntime-int8, torch-bf16, cuda")
    engine: Literal["torch", "onnxruntime"]
    precision: str = Field(description="fp32, int8, bf16 or fp16")
    accepted: bool = Field(description="Within the accuracy gate against fp32 torch.")
    reason: str = Field(description="Why it was dropped; empty when accepted.")
    texts_per_s: float | None = Field(description="Batched throughput at load (accepted ones only).")
    agreement: float | None = Field(description="Label agreement with fp32 torch on the probe texts.")
    score_drop: float | None = Field(description="Primary metric drop on labelled probe texts.")
    canary_diff: float | None = Field(description="Largest probability difference on the canaries.")
    method: str | None = Field(description="How it was built, e.g. static-qdq, dynamic, 3 layers fp32.")
    fp32_layers: list[str] = Field(description="int8 mixed precision: Linear layers kept fp32.")
    seconds: float | None = Field(None, description="What building and judging it cost at load.")


class RuntimeSelectionView(BaseModel):
    """How the serving runtime was chosen at load (``serving_runtime``: auto measures them all)."""

    name: str
    runtime: Literal["torch", "onnxruntime"]
    precision: str
    requested: str = Field(description="The serving_runtime setting: auto or a runtime name.")
    probe: str | None = Field(description="evaluation (the model's held-out texts) or canaries; null: none")
    probe_texts: int
    fp32_layers: list[str] = Field(description="int8 mixed precision: Linear layers kept fp32.")
    reason: str
    seconds: float | None = Field(None, description="What the choice cost at load.")
    candidates: list[RuntimeCandidateView] = Field(description="Every runtime measured; empty: none.")


class ServedModelView(BaseModel):
    """A served model as ``ServedModel.describe`` reports it."""

    task: str
    name: str
    version: str
    labels: list[str]
    quantized: bool = Field(description="int8 serves (torch or ONNX Runtime).")
    serving: Literal["int8", "fp32", "bf16", "fp16"] = Field(description="The served precision.")
    runtime: Literal["torch", "onnxruntime"] = Field(description="The engine of the forward pass.")
    serving_runtime: str = Field(
        "torch", description="The runtime serving: torch, onnxruntime, torch-int8, onnxruntime-int8, ..."
    )
    precision: str = Field("fp32", description="fp32, int8, bf16 or fp16 (the same as serving).")
    runtime_selection: RuntimeSelectionView | None = Field(
        None, description="How the runtime was chosen at load, with every candidate's figures."
    )
    metrics: dict[str, Any] = Field(description="Headline figures of the model's training run.")
    adapter: str | None
    base_model: dict[str, Any] | None = Field(description="The encoder: its id and revision.")
    teacher: dict[str, Any] | None = Field(
        None, description="A distilled student's teacher: its key, base id and revision, training rows."
    )
    mlflow_run_id: str | None
    source: str = Field(description="models:/<name>/<version> (registry) or hf://<repo>@<commit> (Hub)")
    hub: HubCommitView | None = Field(None, description="Served from the Hub: repo, revision, commit.")
    max_length: int
    loaded_at: str = Field(description="ISO 8601 time")


class HubCheckView(BaseModel):
    repo_id: str | None
    revision: str
    latest_commit: str | None = Field(description="The commit the revision pointed at, last check.")
    serving_commit: str | None
    last_check: str | None = Field(description="ISO 8601 time the Hub last answered; null: never.")
    last_error: str | None = Field(description="Why the last check failed (cleared by a good one).")


class TasksView(BaseModel):
    tasks: dict[str, ServedModelView | None] = Field(description="null: nothing serves the task yet")
    errors: dict[str, str] = Field(description="The last load error of a task, if any.")
    source: Literal["registry", "hub"] = Field("registry", description="Where models come from.")
    hub: dict[str, HubCheckView] | None = Field(None, description="model_source=hub: each task's checks.")


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
    hub = getattr(state, "hub", None)
    return {
        "tasks": {t: (m.describe() if (m := state.models.get(t)) else None) for t in state.models.tasks},
        "errors": dict(state.models.last_error),
        "source": "hub" if hub is not None else "registry",
        "hub": hub.status() if hub is not None else None,
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
    summary="Load the current champion(s) beside the served model, validate, then swap atomically"
    " (model_source=hub: check the Hub now and load a new commit)",
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
