"""``POST /inference``: labels and scores for a list of messages, micro-batched with other requests."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from model_runner.service.batcher import NotServing
from model_runner.service.deps import StateDep
from model_runner.service.disconnect import until_disconnected
from model_runner.service.errors import (
    ModelNotLoaded,
    PayloadTooLarge,
    Unprocessable,
)
from model_runner.service.text_input import SanitizingRoute, char_budget, prepare_message

router = APIRouter(tags=["inference"], route_class=SanitizingRoute)
log = logging.getLogger(__name__)


class InferenceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"messages": ["I love the new update!", "the app crashed again"], "task": "sentiment"}
            ]
        },
    )
    messages: list[str] = Field(description="Texts to classify; the answer keeps their order.")
    task: str = Field(default="sentiment", description="Which task's champion answers.")


class ModelRef(BaseModel):
    name: str
    version: str
    task: str
    serving: str


class Prediction(BaseModel):
    label: str
    scores: dict[str, float]
    truncated: bool = Field(description="The text was cut (characters limit or the model's max tokens).")


class InferenceResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]


@router.post(
    "/inference",
    response_model=InferenceResponse,
    summary="Classify messages with the task's champion",
    responses={
        413: {"description": "too many messages or too large a body"},
        422: {"description": "invalid request, or a message the model cannot process"},
        429: {"description": "overloaded: retry after the `Retry-After` seconds"},
        503: {"description": "no model, or no answer within the request deadline"},
    },
)
async def inference(state: StateDep, body: InferenceRequest, request: Request, response: Response):
    settings = state.settings
    if body.task not in state.models.batchers:
        raise Unprocessable(f"unknown task {body.task!r}; served tasks: {', '.join(state.models.tasks)}")
    if len(body.messages) > settings.max_messages:
        raise PayloadTooLarge(
            f"{len(body.messages)} messages in one request; the limit is {settings.max_messages}"
        )
    served = state.models.get(body.task)
    if served is None:
        raise _not_loaded(state, body.task)
    batcher = state.models.batchers[body.task]
    batcher.admit(len(body.messages))  # Overloaded: 429 with Retry-After
    budget = char_budget(served.model.max_length, settings.max_message_chars)
    texts, cut = await _prepare(body.messages, budget)
    if texts:
        try:
            result = await until_disconnected(
                request, batcher.predict(texts, deadline_s=settings.request_deadline_s)
            )
        except NotServing:  # the model went away between the check above and the batch: say why
            raise _not_loaded(state, body.task) from None
        served, proba, truncated = result.served, result.proba, result.truncated
    labels = served.labels
    predictions = []
    for i in range(len(texts)):
        row = proba[i]
        predictions.append(
            {
                "label": labels[int(row.argmax())],
                "scores": {name: round(float(p), 6) for name, p in zip(labels, row, strict=True)},
                "truncated": bool(cut[i] or truncated[i]),
            }
        )
    if texts:
        _record_served(state, served, texts, proba, predictions)
    response.headers["X-Model-Version"] = served.tag
    return {
        "model": {
            "name": served.name,
            "version": served.version,
            "task": served.task,
            "serving": served.precision,
        },
        "predictions": predictions,
    }


# Above this many characters in one request, cleaning (emoji names, regexes) leaves the event loop.
_CLEAN_INLINE_CHARS = 20_000


async def _prepare(messages: list[str], budget: int) -> tuple[list[str], list[bool]]:
    def run() -> tuple[list[str], list[bool]]:
        pairs = [prepare_message(m, budget=budget) for m in messages]
        return [t for t, _ in pairs], [c for _, c in pairs]

    if sum(map(len, messages)) <= _CLEAN_INLINE_CHARS:
        return run()
    return await run_in_threadpool(run)


def _record_served(state, served, texts: list[str], proba, predictions: list[dict]) -> None:
    """Hand the answer to the served-traffic recorder (``model_runner.monitoring``), if the service has
    one: a cheap in-memory queue; the database write happens on the recorder's own thread."""
    recorder = getattr(state, "served", None)
    if recorder is None:
        return
    try:
        recorder.record(
            served.task,
            served.name,
            str(served.version),
            texts,
            [p["label"] for p in predictions],
            [float(row.max()) for row in proba[: len(texts)]],
            classes=served.labels,
        )
    except Exception:  # monitoring never fails a request
        log.exception("served-traffic recording failed")


def _not_loaded(state, task: str) -> ModelNotLoaded:
    why = state.models.last_error.get(task) or "the model is still loading"
    return ModelNotLoaded(f"no model is loaded for task {task!r}: {why}", headers={"Retry-After": "30"})
