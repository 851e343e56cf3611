"""Served traffic end to end: ``POST /inference`` under uvicorn samples into Postgres through the
recorder, ``GET /drift`` reports it as the ``served`` source, and the regression DAG's decision raises
the collapse alert from served traffic alone; a database outage costs no request."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from contextlib import contextmanager

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_runner.db import Database
from model_runner.monitoring import ServedRecorder
from model_runner.store.keys import normalise, text_key
from tests.conftest import REPO


@pytest.fixture(scope="module")
def collapse_check():
    sys.path.insert(0, str(REPO / "airflow" / "dags"))
    try:
        from tweetpulse_dags import regression
        from tweetpulse_dags.config import DEFAULT_THRESHOLDS
    finally:
        sys.path.remove(str(REPO / "airflow" / "dags"))
    return lambda drift: regression.live_incidents("sentiment", drift, "1", dict(DEFAULT_THRESHOLDS))


@contextmanager
def recorder(live, db: Database | None = None, **settings):
    """A recorder of our own on the running service (the one the service wired, if any, waits)."""
    state = live.state
    previous = getattr(state, "served", None)
    rec = ServedRecorder(
        state.settings.model_copy(update=settings), db or state.components.db, CollectorRegistry()
    )
    state.served = rec
    try:
        yield rec
    finally:
        state.served = previous


@pytest.fixture
def keyword_model(live, monkeypatch):
    """The served model answers by keyword (``hate`` negative, ``love`` positive, else neutral), so a
    test chooses the class mix of the traffic; everything else (route, batcher, recorder) is real."""
    served = live.state.models.get("sentiment")
    labels = list(served.labels)

    def predict(texts, **kwargs):
        proba = np.full((len(texts), len(labels)), 0.05, np.float32)
        for i, text in enumerate(texts):
            label = "negative" if "hate" in text else "positive" if "love" in text else "neutral"
            proba[i, labels.index(label)] = 0.9
        return proba, np.zeros(len(texts), bool)

    monkeypatch.setattr(served.model, "predict_with_truncation", predict)
    with live.state.components.db.connect() as conn:
        conn.execute("DELETE FROM served_predictions")
    return served


def traffic(kind: dict[str, int]) -> list[str]:
    tag = uuid.uuid4().hex[:8]  # new to the result cache
    words = {"negative": "hate", "positive": "love", "neutral": "meeting"}
    return [f"{words[label]} it {tag} {i}" for label, n in kind.items() for i in range(n)]


def classify(live, texts: list[str]) -> list[dict]:
    with live.client() as c:
        r = c.post("/inference", json={"messages": texts})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def drift(live) -> dict:
    with live.client() as c:
        r = c.get("/drift", params={"task": "sentiment", "days": 1})
    assert r.status_code == 200, r.text
    return r.json()


def test_served_traffic_shifted_to_one_class_raises_the_collapse_alert(live, keyword_model, collapse_check):
    with recorder(live) as rec:
        classify(live, traffic({"negative": 40}))
        assert rec.flush_now() == 40
    body = drift(live)
    with live.state.components.db.connect() as conn:
        (inspected,) = conn.execute("SELECT count(*) FROM tweets").fetchone()
    assert inspected == 0  # no inspector tweets at all
    assert body["source"] == "served" and body["live_tweets"] == 40
    assert (body["dominant_label"], body["dominant_share"]) == ("negative", 1.0)
    served = next(s for s in body["sources"] if s["source"] == "served")
    assert served["volume"] == 40 and served["mean_confidence"] == pytest.approx(0.9, abs=0.01)
    incidents, _ = collapse_check(body)
    assert [(i.kind, i.key) for i in incidents] == [("collapse", "collapse:sentiment:v1")]


def test_normal_mixed_traffic_raises_nothing(live, keyword_model, collapse_check):
    with recorder(live) as rec:
        classify(live, traffic({"negative": 14, "neutral": 13, "positive": 13}))
        rec.flush_now()
    body = drift(live)
    assert body["source"] == "served" and body["live_tweets"] == 40 and body["dominant_share"] == 0.35
    incidents, clear = collapse_check(body)
    assert incidents == [] and "collapse:sentiment:v1" in clear


def test_what_is_stored_is_what_was_answered_and_no_text_by_default(live, keyword_model):
    texts = traffic({"negative": 2, "positive": 1})
    with recorder(live) as rec:
        predictions = classify(live, texts)
        rec.flush_now()
    with live.state.components.db.connect() as conn:
        rows = conn.execute(
            "SELECT text_hash, text, label, model_name, model_version FROM served_predictions ORDER BY id"
        ).fetchall()
    assert [bytes(r[0]) for r in rows] == [text_key(normalise(t)) for t in texts]
    assert [r[2] for r in rows] == [p["label"] for p in predictions]
    assert {r[1] for r in rows} == {None}
    assert {(r[3], r[4]) for r in rows} == {("tweetpulse-sentiment", "1")}


def test_the_text_is_stored_when_the_setting_allows_it(live, keyword_model):
    texts = traffic({"positive": 2})
    with recorder(live, served_store_text=True) as rec:
        classify(live, texts)
        rec.flush_now()
    with live.state.components.db.connect() as conn:
        stored = [r[0] for r in conn.execute("SELECT text FROM served_predictions ORDER BY id")]
    assert stored == texts


def test_sample_rate_zero_stores_nothing(live, keyword_model):
    with recorder(live, served_sample_rate=0.0) as rec:
        classify(live, traffic({"positive": 5}))
        assert rec.flush_now() == 0
    assert drift(live)["sources"][1]["volume"] == 0


def test_a_database_outage_fails_no_request(live, keyword_model):
    gone = Database("postgresql://nobody@127.0.0.1:9/none", connect_timeout_s=1)
    with recorder(live, db=gone) as rec:
        asyncio.run(rec.start())
        try:
            for _ in range(3):
                assert len(classify(live, traffic({"negative": 5}))) == 5
        finally:
            asyncio.run(rec.stop(timeout_s=15))
    # every sample was dropped and counted; none of it reached a client
    assert rec.metrics.dropped.labels("database")._value.get() == 15
    assert rec.pending == 0


def test_the_service_samples_with_its_own_recorder_and_exports_the_gauges(live):
    """The recorder ServiceState wires (model_runner/service/state.py) writes on its own thread."""
    own = getattr(live.state, "served", None)
    if own is None:
        pytest.skip("this ServiceState wires no served-traffic recorder")
    with live.state.components.db.connect() as conn:
        conn.execute("DELETE FROM served_predictions")
    texts = traffic({"neutral": 3})
    classify(live, texts)
    deadline = time.monotonic() + 15
    stored = 0
    while time.monotonic() < deadline and stored < 3:
        with live.state.components.db.connect() as conn:
            (stored,) = conn.execute("SELECT count(*) FROM served_predictions").fetchone()
        time.sleep(0.1)
    assert stored == 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with live.client() as c:
            text = c.get("/metrics").text
        if "tweetpulse_served_class_share{" in text:
            break
        time.sleep(0.2)
    assert 'tweetpulse_served_samples_recorded_total{task="sentiment"}' in text
    assert "tweetpulse_served_class_share{" in text and "tweetpulse_served_mean_confidence{" in text
