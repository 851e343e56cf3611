"""Health probes, Prometheus metrics, /model, /similar and the OpenAPI page."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from model_runner.modeling.runtimes import REDUCED_PRECISION_MARGIN
from model_runner.store import ExampleStore
from model_runner.store.examples import Example
from tests.service.conftest import serve


def test_live_answers_at_once_and_ready_waits_for_a_model(service_settings):
    with serve(service_settings, wait_ready=False) as server, server.client() as c:
        assert c.get("/health/live").json() == {"status": "ok"}
        first = c.get("/health/ready")
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.headers["Retry-After"] and first.json()["status"] == "not_ready"
    with serve(service_settings) as server, server.client() as c:
        body = c.get("/health/ready").json()
        assert body["checks"] == {"startup": True, "model": True, "database": True, "draining": False}
        assert body["models"] == {"sentiment": "tweetpulse-sentiment/1", "emotion": None}


def test_ready_is_503_without_any_champion(tmp_path, pg_server, tiny_bert):
    from tests.service.conftest import make_settings, new_database

    settings = make_settings(tmp_path / "home", new_database(pg_server), tiny_bert)
    with serve(settings, wait_ready=False) as server, server.client() as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = c.get("/health/ready")
            if r.json()["checks"]["startup"] and r.json()["components"]["models_loaded"]:
                break
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["checks"]["model"] is False
        r = c.post("/inference", json={"messages": ["hi"]})
        assert r.status_code == 503 and "no champion" in r.json()["error"]["message"]


def test_metrics_count_requests_batches_and_the_served_model(live):
    with live.client() as c:
        for i in range(3):
            c.post("/inference", json={"messages": [f"a{i}", f"b{i}"]})
        c.post("/inference", json={"messages": ["a0", "a0"]})  # answered from the result cache
        text = c.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    requests = [
        v
        for (name, labels), v in samples.items()
        if name == "tweetpulse_http_requests_total"
        and ("route", "/inference") in labels
        and ("status", "200") in labels
    ]
    assert requests and requests[0] >= 3
    assert any(n == "tweetpulse_http_request_seconds_bucket" for n, _ in samples)
    assert any(n == "tweetpulse_inference_batch_size_count" and v >= 3 for (n, _), v in samples.items())
    assert any(n == "tweetpulse_inference_reused_texts_total" and v >= 2 for (n, _), v in samples.items())
    info = [dict(lbl) for (n, lbl), v in samples.items() if n == "tweetpulse_served_model_info" and v == 1]
    assert {"task": "sentiment", "name": "tweetpulse-sentiment", "version": "1"}.items() <= info[0].items()
    assert any(n == "tweetpulse_training_jobs" for n, _ in samples)


def test_model_describes_what_is_served(live):
    with live.client() as c:
        body = c.get("/model").json()
        assert body["version"] == "1" and body["labels"] == ["negative", "neutral", "positive"]
        assert body["serving"] in ("int8", "fp32") and body["metrics"]["macro_recall"] >= 0
        tasks = c.get("/model/tasks").json()["tasks"]
        assert tasks["sentiment"]["version"] == "1" and tasks["emotion"] is None
        versions = c.get("/model/versions").json()["versions"]
        assert versions[0]["version"] == "1" and "champion" in versions[0]["aliases"]
        assert {"macro_recall", "recall_negative", "recall_positive"} <= set(versions[0]["metrics"])
        assert c.get("/docs").status_code == 200
        schema = c.get("/openapi.json").json()
        assert "examples" in str(schema["components"]["schemas"]["InferenceRequest"])


def test_model_and_metrics_report_the_runtime_chosen_at_load(service_settings):
    auto = service_settings.model_copy(update={"serving_runtime": "auto"})  # the product's default
    with serve(auto) as live, live.client() as c:
        body = c.get("/model").json()
        text = c.get("/metrics").text
    selection = body["runtime_selection"]
    assert selection["requested"] == live.state.settings.serving_runtime == "auto"
    assert body["serving_runtime"] == selection["name"] and body["precision"] == selection["precision"]
    assert body["serving"] == body["precision"] and body["runtime"] == selection["runtime"]
    assert body["quantized"] == (body["precision"] == "int8")
    candidates = {row["name"]: row for row in selection["candidates"]}
    assert candidates["torch"]["accepted"] and candidates["torch"]["texts_per_s"] > 0
    assert candidates[body["serving_runtime"]]["accepted"]
    # the one served is the fastest of those within the gate (reduced precision needs a 5% lead)
    accepted = [row for row in selection["candidates"] if row["accepted"]]
    fastest = max(row["texts_per_s"] for row in accepted)
    assert candidates[body["serving_runtime"]]["texts_per_s"] * REDUCED_PRECISION_MARGIN >= fastest
    assert all(row["texts_per_s"] is None for row in selection["candidates"] if not row["accepted"])

    samples = [
        (s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples
    ]
    info = [lbl for name, lbl, v in samples if name == "tweetpulse_serving_runtime_info" and v == 1]
    assert {"task": "sentiment", "runtime": body["serving_runtime"], "precision": body["precision"]} in info
    speeds = {
        lbl["runtime"]: v
        for name, lbl, v in samples
        if name == "tweetpulse_runtime_texts_per_second" and lbl["task"] == "sentiment"
    }
    assert speeds == pytest.approx({row["name"]: row["texts_per_s"] for row in accepted})


def test_similar_returns_the_nearest_stored_labelled_tweets(live):
    components = live.state.components
    texts = ["I love this phone", "the train is late again", "meeting at noon tomorrow"]
    ExampleStore(components.db, "sentiment").upsert(
        Example(t, label, "test") for t, label in zip(texts, ["positive", "negative", "neutral"], strict=True)
    )
    components.embeddings.get_or_compute(texts)
    with live.client() as c:
        r = c.post("/similar", json={"text": "the train is late again", "k": 2})
    assert r.status_code == 200, r.text
    found = r.json()["neighbours"]
    assert len(found) == 2 and found[0]["text"] == "the train is late again"
    assert found[0]["label"] == "negative" and np.isclose(found[0]["similarity"], 1.0, atol=1e-4)
    assert found[0]["similarity"] >= found[1]["similarity"]
