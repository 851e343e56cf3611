"""``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from model_runner.service.deps import StateDep
from model_runner.service.text_input import SanitizingRoute

router = APIRouter(tags=["health"], route_class=SanitizingRoute)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep):
    if state.startup_done.is_set() and state.startup_error is None:
        counts = await run_in_threadpool(_job_counts, state)
        state.metrics.job_counts(counts)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _job_counts(state) -> dict[str, int]:
    with state.components.db.connect() as conn:
        counts = dict(conn.execute("SELECT state, count(*) FROM training_jobs GROUP BY state").fetchall())
        row = conn.execute(
            "SELECT count(*) FROM training_jobs WHERE state = 'queued' AND lease_token IS NULL"
        ).fetchone()
    return {**counts, "unclaimed": int(row[0]) if row else 0}
