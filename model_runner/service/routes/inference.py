"""``POST /inference``: labels and scores for a list of messages, micro-batched with other requests."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from model_runner.service.auth import require_inference
from model_runner.service.batcher import NotServing
from model_runner.service.deps import get_state
from model_runner.service.errors import ModelNotLoaded, PayloadTooLarge, Unprocessable

router = APIRouter(tags=["inference"])


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
    dependencies=[Depends(require_inference)],
    summary="Classify messages with the task's champion",
    responses={
        413: {"description": "too many messages or too large a body"},
        503: {"description": "no model"},
    },
)
async def inference(body: InferenceRequest, response: Response, state=Depends(get_state)):
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
    limit = settings.max_message_chars
    cut = [len(m) > limit for m in body.messages]
    texts = [m[:limit] for m in body.messages]
    if texts:
        try:
            result = await state.models.batchers[body.task].predict(texts)
        except NotServing:
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
    response.headers["X-Model-Version"] = served.tag
    return {
        "model": {
            "name": served.name,
            "version": served.version,
            "task": served.task,
            "serving": "int8" if served.quantized else "fp32",
        },
        "predictions": predictions,
    }


def _not_loaded(state, task: str) -> ModelNotLoaded:
    why = state.models.last_error.get(task) or "the model is still loading"
    return ModelNotLoaded(f"no model is loaded for task {task!r}: {why}", headers={"Retry-After": "30"})
