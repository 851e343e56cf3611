"""Liveness (the process answers) and readiness (a model is loaded and the database answers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from model_runner.service.deps import get_state

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="The process is up")
async def live() -> dict:
    return {"status": "ok"}


@router.get("/health/ready", summary="Ready to serve: a model is loaded and the database answers")
async def ready(state=Depends(get_state)):
    checks = {"startup": state.startup_done.is_set() and state.startup_error is None}
    checks["model"] = state.models.any_loaded
    checks["database"] = bool(state.startup_done.is_set()) and await run_in_threadpool(
        state.components.db.ping
    )
    body = {
        "status": "ready" if all(checks.values()) else "not_ready",
        "checks": checks,
        "models": {t: (m.tag if (m := state.models.get(t)) else None) for t in state.models.tasks},
    }
    if state.startup_error:
        body["startup_error"] = state.startup_error
    if not all(checks.values()):
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return body
