"""``POST /inference`` over real HTTP: order, batching, limits, truncation, tasks."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import numpy as np
import pytest

from tests.training.conftest import make_rows

TEXTS = [r["text"] for r in make_rows(5, seed=7)]


def test_predictions_come_in_input_order_with_model_version(live):
    with live.client() as c:
        r = c.post("/inference", json={"messages": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "tweetpulse-sentiment" and body["model"]["version"] == "1"
    assert r.headers["X-Model-Version"] == "tweetpulse-sentiment/1"
    assert len(body["predictions"]) == len(TEXTS)
    served = live.state.models.get("sentiment")
    expected = served.model.predict_proba(TEXTS)
    for pred, row in zip(body["predictions"], expected, strict=True):
        assert set(pred["scores"]) == {"negative", "neutral", "positive"}
        assert sum(pred["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert pred["label"] == served.labels[int(row.argmax())]
        assert [pred["scores"][k] for k in served.labels] == pytest.approx(row.tolist(), abs=5e-3)


def _unseen(texts: list[str]) -> list[str]:
    """The texts made new to the service's result cache, so the model really runs on them."""
    tag = uuid.uuid4().hex[:8]
    return [f"{t} {tag}" for t in texts]


def test_batch_results_equal_one_at_a_time_results(live):
    cache = live.state.models.batchers["sentiment"].cache
    computed = live.state.metrics.batch_size.labels("sentiment")._sum
    with live.client() as c:
        cache.clear()
        before = computed.get()
        batch = c.post("/inference", json={"messages": TEXTS}).json()["predictions"]
        single = []
        for t in TEXTS:
            cache.clear()  # each single text through its own forward pass, not the batch's answer
            single.append(c.post("/inference", json={"messages": [t]}).json()["predictions"][0])
        assert computed.get() - before == 2 * len(TEXTS)
    # int8 dynamic quantization scales activations per forward pass, so a text's scores move by about
    # 1e-3 with its batch neighbours (fp32: ~1e-6); the labels must not
    atol = 5e-3 if live.state.models.get("sentiment").precision != "fp32" else 1e-4
    for b, s in zip(batch, single, strict=True):
        assert b["label"] == s["label"]
        keys = list(b["scores"])
        assert np.allclose([b["scores"][k] for k in keys], [s["scores"][k] for k in keys], atol=atol)


def test_concurrent_requests_share_forward_passes_and_keep_their_own_answers(live):
    texts = _unseen(TEXTS)

    async def run() -> list[dict]:
        async with httpx.AsyncClient(base_url=live.url, timeout=30, headers=live.client().headers) as c:
            rs = await asyncio.gather(*[c.post("/inference", json={"messages": [t] * 3}) for t in texts])
        return [r.json() for r in rs]

    metrics = live.state.metrics
    before = metrics.batch_size.labels("sentiment")._sum.get()
    reused = metrics.reused.labels("sentiment")._value.get()
    bodies = asyncio.run(run())
    for text, body in zip(texts, bodies, strict=True):
        alone = live.state.models.get("sentiment").model.predict([text])[0]
        assert [p["label"] for p in body["predictions"]] == [alone] * 3
    # each distinct text ran through the model once; its two repeats were answered without a pass
    assert metrics.batch_size.labels("sentiment")._sum.get() - before == len(texts)
    assert metrics.reused.labels("sentiment")._value.get() - reused == 2 * len(texts)


def test_a_text_seen_before_is_answered_from_the_cache(live):
    texts = _unseen(TEXTS)
    metrics = live.state.metrics
    with live.client() as c:
        first = c.post("/inference", json={"messages": texts}).json()["predictions"]
        computed = metrics.batch_size.labels("sentiment")._sum.get()
        reused = metrics.reused.labels("sentiment")._value.get()
        again = c.post("/inference", json={"messages": texts[::-1]}).json()["predictions"]
    assert metrics.batch_size.labels("sentiment")._sum.get() == computed  # no forward pass at all
    assert metrics.reused.labels("sentiment")._value.get() - reused == len(texts)
    assert again[::-1] == first


def test_empty_list_gives_empty_predictions(live):
    with live.client() as c:
        r = c.post("/inference", json={"messages": []})
    assert r.status_code == 200 and r.json()["predictions"] == []
    assert r.json()["model"]["version"] == "1"


def test_long_texts_are_truncated_and_flagged(live):
    limit = live.state.settings.max_message_chars
    with live.client() as c:
        r = c.post(
            "/inference", json={"messages": ["short and sweet", "love " * (limit // 2), "great " * 60]}
        )
    flags = [p["truncated"] for p in r.json()["predictions"]]
    assert flags == [False, True, True]  # chars limit; then the model's 32-token limit


def test_too_many_messages_is_413(live):
    n = live.state.settings.max_messages + 1
    with live.client() as c:
        r = c.post("/inference", json={"messages": ["x"] * n})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "payload_too_large"
    assert str(n) in r.json()["error"]["message"]


def test_a_task_without_champion_is_503_with_retry_after_and_unknown_task_is_422(live):
    with live.client() as c:
        r = c.post("/inference", json={"messages": ["hi"], "task": "emotion"})
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json()["error"]["type"] == "model_not_loaded"
        r = c.post("/inference", json={"messages": ["hi"], "task": "sarcasm"})
        assert r.status_code == 422 and "sarcasm" in r.json()["error"]["message"]
