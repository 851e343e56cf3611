"""Liveness (the process answers) and readiness (each component, and whether to send traffic here)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from model_runner.service.deps import StateDep
from model_runner.service.text_input import SanitizingRoute

router = APIRouter(tags=["health"], route_class=SanitizingRoute)


class Live(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    startup: bool = Field(description="Start-up finished without an error.")
    model: bool = Field(description="At least one task has a model.")
    database: bool
    draining: bool


class ReadyComponents(BaseModel):
    models: dict[str, str | None] = Field(description="task -> 'name/version' served, null: none yet")
    database: Literal["ok", "down", "starting"]
    models_loaded: bool = Field(description="Every task's first load ended (loaded or no champion).")
    training_worker: bool
    draining: bool


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    checks: ReadyChecks
    components: ReadyComponents
    models: dict[str, str | None] = Field(description="The same as components.models.")
    role: Literal["all", "serve", "train"] = Field(description="What this process does (setting `role`).")
    replica: str = Field(description="This process: `host:pid`, to tell replicas behind a balancer apart.")
    startup_error: str | None = Field(None, description="Only while start-up fails and retries.")


@router.get("/health/live", response_model=Live, summary="The process is up")
async def live():
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    response_model_exclude_none=True,  # startup_error: only while start-up fails
    summary="Ready for traffic: a model serves and the service is not draining; each component reported",
    responses={503: {"model": Readiness, "description": "not ready (loading, draining, or no model)"}},
)
async def ready(state: StateDep):
    """``ready`` (200): a model serves, the database answers; ``degraded`` (200): a model serves but the
    database does not (``/inference`` works, stored-data routes answer 503); ``not_ready`` (503):
    nothing to serve yet, or draining after SIGTERM."""
    database = state.startup_done.is_set() and await run_in_threadpool(state.components.db.ping)
    components = {
        "models": {t: (m.tag if (m := state.models.get(t)) else None) for t in state.models.tasks},
        "database": "ok" if database else ("down" if state.startup_done.is_set() else "starting"),
        "models_loaded": state.models_started.is_set(),
        "training_worker": state.jobs.worker_running,
        "draining": state.draining,
    }
    if state.serves:
        serving = state.models.any_loaded and not state.draining
        status = "not_ready" if not serving else ("ready" if database else "degraded")
    else:  # a train process: ready to claim jobs when the database answers
        status = "ready" if database and not state.draining else "not_ready"
    body = {
        "status": status,
        "checks": {
            "startup": state.startup_done.is_set() and state.startup_error is None,
            "model": state.models.any_loaded,
            "database": database,
            "draining": state.draining,
        },
        "components": components,
        "models": components["models"],
        "role": state.role,
        "replica": state.replica,
    }
    if state.startup_error:
        body["startup_error"] = state.startup_error
    if status == "not_ready":
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return body
