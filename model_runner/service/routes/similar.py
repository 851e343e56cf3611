"""``POST /similar``: the stored labelled tweets nearest to a text (pgvector k-NN on the frozen encoder)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from model_runner.service.deps import StateDep
from model_runner.service.errors import Unprocessable
from model_runner.service.text_input import SanitizingRoute

router = APIRouter(tags=["inference"], route_class=SanitizingRoute)


class SimilarRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"text": "the app keeps crashing", "k": 5}]}
    )
    text: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=100)
    task: str = "sentiment"


class EncoderRef(BaseModel):
    id: str
    revision: str


class Neighbour(BaseModel):
    text: str
    label: str
    similarity: float


class SimilarResponse(BaseModel):
    task: str
    encoder: EncoderRef
    neighbours: list[Neighbour] = Field(description="Nearest first.")


@router.post("/similar", response_model=SimilarResponse, summary="Nearest labelled tweets")
async def similar(state: StateDep, body: SimilarRequest):
    if body.task not in state.models.tasks:
        raise Unprocessable(f"unknown task {body.task!r}; served tasks: {', '.join(state.models.tasks)}")
    components = state.components
    # the encoder runs (and on first use loads) on the inference thread: torch must not run on a
    # long-lived pool thread (see models.in_own_thread); the database query runs on the pool
    loop = asyncio.get_running_loop()
    vector = await loop.run_in_executor(state.executor, lambda: components.encoder.encode([body.text])[0])
    return await run_in_threadpool(_similar, components, body, vector)


def _similar(components, body: SimilarRequest, vector) -> dict:
    encoder = components.encoder
    found = components.examples(body.task).similar(vector, encoder.encoder_id, encoder.revision, body.k)
    return {
        "task": body.task,
        "encoder": {"id": encoder.encoder_id, "revision": encoder.revision},
        "neighbours": [
            {"text": n.text, "label": n.label, "similarity": round(n.similarity, 6)} for n in found
        ],
    }
