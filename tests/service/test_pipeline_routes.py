"""The pipeline routes over real HTTP (uvicorn on loopback) with real Postgres, MLflow and a champion."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

_ids = itertools.count(7_000_000_000_000_000_001)
NOW = datetime.now(UTC)


def _tweets(texts: list[str]) -> list[dict]:
    return [
        {
            "id": str(next(_ids)),
            "text": t,
            "author": "ann",
            "created_at": (NOW - timedelta(hours=1)).isoformat(),
        }
        for t in texts
    ]


def _inspect(c, admin, texts: list[str], found_by: str = "query:acme") -> list[dict]:
    """What the tweet_inspector does: store tweets, classify them, store the predictions."""
    tweets = _tweets(texts)
    assert c.post("/tweets", json={"found_by": found_by, "tweets": tweets}, headers=admin).status_code == 200
    inference = c.post("/inference", json={"messages": texts}).json()
    preds = [
        {"tweet_id": t["id"], "label": p["label"], "scores": p["scores"]}
        for t, p in zip(tweets, inference["predictions"], strict=True)
    ]
    body = {"task": "sentiment", "model_version": inference["model"]["version"], "predictions": preds}
    r = c.post("/predictions", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return tweets


def test_writes_need_the_admin_token(live):
    body = {"found_by": "q", "tweets": _tweets(["hello"])}
    with live.client(token=None) as c:
        assert c.post("/tweets", json=body).status_code == 401
        r = c.post("/tweets", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
        assert c.post("/alerts/claim", json={"key": "k", "kind": "x"}).status_code == 401


def test_tweets_and_predictions_are_idempotent(live):
    tweets = _tweets(["love the new phone", "train late again"])
    body = {"found_by": "query:acme", "tweets": tweets}
    with live.client() as c:
        first = c.post("/tweets", json=body, headers=live.admin()).json()
        again = c.post("/tweets", json=body, headers=live.admin()).json()
        assert (first["inserted"], again["inserted"], again["received"]) == (2, 0, 2)
        preds = {
            "model_version": "1",
            "predictions": [
                {
                    "tweet_id": t["id"],
                    "label": "neutral",
                    "scores": {"negative": 0.3, "neutral": 0.4, "positive": 0.3},
                }
                for t in tweets
            ],
        }
        one = c.post("/predictions", json=preds, headers=live.admin()).json()
        two = c.post("/predictions", json=preds, headers=live.admin()).json()
    assert (one["inserted"], one["queued_for_review"]) == (2, 2)
    assert (two["inserted"], two["queued_for_review"]) == (0, 0)
    assert one["review_threshold"] == 0.6


def test_predictions_for_unknown_tweets_are_a_422_naming_them(live):
    body = {"model_version": "1", "predictions": [{"tweet_id": "42", "label": "a", "scores": {"a": 1.0}}]}
    with live.client() as c:
        r = c.post("/predictions", json=body, headers=live.admin())
    assert r.status_code == 422
    assert r.json()["error"]["tweet_ids"] == ["42"]


def test_review_queue_and_labels_round_trip(live):
    tweets = _tweets(["is it good? who knows", "maybe fine maybe not"])
    with live.client() as c:
        c.post("/tweets", json={"found_by": "q", "tweets": tweets}, headers=live.admin())
        unsure = {"negative": 0.34, "neutral": 0.33, "positive": 0.33}
        preds = [{"tweet_id": t["id"], "label": "negative", "scores": unsure} for t in tweets]
        c.post("/predictions", json={"model_version": "1", "predictions": preds}, headers=live.admin())
        queued = {i["tweet_id"] for i in c.get("/review", params={"limit": 1000}).json()["items"]}
        assert {t["id"] for t in tweets} <= queued

        bad = c.post(
            "/labels", json={"items": [{"tweet_id": tweets[0]["id"], "label": "meh"}]}, headers=live.admin()
        )
        assert bad.status_code == 422 and "meh" in bad.json()["error"]["message"]

        items = [
            {"tweet_id": tweets[0]["id"], "label": "neutral"},
            {"text": tweets[1]["text"], "label": "positive"},
        ]
        done = c.post("/labels", json={"items": items}, headers=live.admin()).json()
        assert (done["added"], done["removed_from_review"]) == (2, 2)
        again = c.post("/labels", json={"items": items}, headers=live.admin()).json()
        assert (again["added"], again["duplicates"]) == (0, 2)
        left = {i["tweet_id"] for i in c.get("/review", params={"limit": 1000}).json()["items"]}
    assert not {t["id"] for t in tweets} & left
    with live.state.components.db.connect() as conn:
        n = conn.execute("SELECT count(*) FROM labelled_examples WHERE source = 'feedback'").fetchone()[0]
    assert n >= 2


def test_daily_stats_are_stored_and_logged_once(live):
    found_by = "query:stats-test"
    with live.client() as c:
        _inspect(c, live.admin(), ["love it", "hate it", "it is tuesday"], found_by)
        body = {"found_by": found_by, "days": 2}
        first = c.post("/stats/daily", json=body, headers=live.admin()).json()
        again = c.post("/stats/daily", json=body, headers=live.admin()).json()
        stored = c.get("/stats/daily", params={"found_by": found_by, "days": 2}).json()["rows"]
    (row,) = first["rows"]
    assert row["volume"] == 3 and sum(row["counts"].values()) == 3
    assert sum(row["shares"].values()) == pytest.approx(1)
    assert 0 < row["mean_confidence"] <= 1
    assert (first["logged_to_mlflow"], again["logged_to_mlflow"], again["changed"]) == (1, 0, 0)
    assert stored[0]["mlflow_run_id"] and stored[0]["volume"] == 3


def test_drift_and_summary(live):
    with live.client() as c:
        tweets = _inspect(c, live.admin(), [f"great coffee number {i}" for i in range(5)], "query:drift-test")
        prepared = c.post("/drift/reference", headers=live.admin())
        assert prepared.status_code == 200, prepared.text
        drift = c.get("/drift", params={"days": 7}).json()
        summary = c.get("/tweets/summary", params={"found_by": "query:drift-test", "per_class": 2}).json()
    # the top level carries the more one-sided of the two sources (inspected tweets, served answers)
    sources = {s["source"]: s for s in drift["sources"]}
    assert sources["inspected"]["volume"] >= 5 and drift["reference_examples"] > 0, drift
    assert drift["live_tweets"] == sources[drift["source"]]["volume"]
    assert 0 <= drift["centroid_distance"] <= 2
    assert drift["dominant_share"] == max(drift["live_shares"].values())
    assert drift["dominant_share"] == max(s["dominant_share"] or 0 for s in sources.values())
    assert summary["volume"] == 5 and sum(summary["shares"].values()) == pytest.approx(1)
    ids = {t["id"] for t in tweets}
    for cls in summary["classes"]:
        assert 1 <= len(cls["examples"]) <= 2
        assert {e["tweet_id"] for e in cls["examples"]} <= ids


def test_alert_claims_over_http(live):
    with live.client() as c:
        claim = c.post(
            "/alerts/claim", json={"key": "test:http", "kind": "test"}, headers=live.admin()
        ).json()
        second = c.post(
            "/alerts/claim", json={"key": "test:http", "kind": "test"}, headers=live.admin()
        ).json()
        assert claim["granted"] and not second["granted"]
        done = c.post(
            "/alerts/confirm", json={"key": "test:http", "token": claim["token"]}, headers=live.admin()
        )
        assert done.status_code == 200
        stale = c.post(
            "/alerts/release", json={"key": "test:http", "token": claim["token"]}, headers=live.admin()
        )
        assert stale.status_code == 409 and stale.json()["error"]["type"] == "conflict"
        listed = c.get("/alerts", params={"kind": "test"}).json()["alerts"]
    assert [(a["key"], a["state"]) for a in listed] == [("test:http", "sent")]


BAD = [
    ("post", "/tweets", {"found_by": "q", "tweets": [{"id": -1, "text": "x"}]}),
    ("post", "/tweets", {"found_by": "q", "tweets": [{"id": "abc", "text": "x"}]}),
    ("post", "/tweets", {"found_by": "", "tweets": []}),
    ("post", "/tweets", {"tweets": "nope"}),
    (
        "post",
        "/predictions",
        {"model_version": "1", "predictions": [{"tweet_id": 1, "label": "x", "scores": {}}]},
    ),
    (
        "post",
        "/predictions",
        {"model_version": "1", "predictions": [{"tweet_id": 1, "label": "a", "scores": {"a": 7}}]},
    ),
    ("post", "/labels", {"items": [{"label": "positive"}]}),
    ("post", "/labels", {"task": "weather", "items": [{"text": "x", "label": "positive"}]}),
    ("post", "/stats/daily", {"days": 0}),
    ("post", "/alerts/claim", {"key": "bad key!", "kind": "x"}),
    ("get", "/drift?days=-1", None),
    ("get", "/tweets/summary?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", None),
    ("get", "/tweets/summary?per_class=500", None),
    ("get", "/review?task=weather", None),
]


@pytest.mark.parametrize("method, path, body", BAD)
def test_bad_input_gets_a_4xx_json_error(live, method, path, body):
    with live.client() as c:
        r = c.request(method.upper(), path, json=body, headers=live.admin())
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
    assert set(r.json()["error"]) >= {"type", "message"}
