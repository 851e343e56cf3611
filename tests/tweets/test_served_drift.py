"""Drift, class shares and collapse over served traffic (``served_predictions``) next to the
inspector's tweets, and the regression DAG's own decision function on the result."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from model_runner.monitoring.store import ServedRow, insert_rows
from model_runner.store import ExampleStore
from model_runner.store.examples import Example
from model_runner.tweets.drift import drift_report
from model_runner.tweets.window import Window
from tests.conftest import REPO
from tests.tweets.conftest import NOW, add_inspected

WINDOW = Window.last_days(7, until=NOW)


@pytest.fixture(scope="module")
def regression():
    """The regression_check DAG's decisions (plain Python: no Airflow needed to import them)."""
    sys.path.insert(0, str(REPO / "airflow" / "dags"))
    try:
        from tweetpulse_dags import regression
        from tweetpulse_dags.config import DEFAULT_THRESHOLDS
    finally:
        sys.path.remove(str(REPO / "airflow" / "dags"))
    return lambda drift: regression.live_incidents("sentiment", drift, "1", dict(DEFAULT_THRESHOLDS))


def _train(db):
    labels = ["negative", "neutral", "positive"]
    ExampleStore(db).upsert([Example(f"example {i}", labels[i % 3], source="data") for i in range(30)])


def serve(db, labels: list[str], *, when=NOW - timedelta(hours=2), confidence: float = 0.8) -> None:
    insert_rows(
        db,
        [
            ServedRow("sentiment", f"h{i}-{when}".encode(), None, "m", "1", label, confidence, when, "r1")
            for i, label in enumerate(labels)
        ],
    )


def test_served_traffic_of_one_class_is_a_collapse_without_any_inspected_tweet(db, store, regression):
    _train(db)
    serve(db, ["negative"] * 48 + ["positive"] * 2)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.source == "served"
    assert (report.live_tweets, report.dominant_label, report.dominant_share) == (50, "negative", 0.96)
    assert report.centroid_distance is None and report.live_embedded == 0
    inspected, served = report.sources
    assert (inspected.source, inspected.volume) == ("inspected", 0)
    assert (served.source, served.volume, served.mean_confidence) == ("served", 50, pytest.approx(0.8))
    # total variation distance to the training thirds: half of |.96-1/3| + |0-1/3| + |.04-1/3|
    assert served.share_distance == pytest.approx(0.96 - 1 / 3, abs=1e-5)
    incidents, clear = regression(report.to_dict())
    assert [(i.kind, i.key) for i in incidents] == [("collapse", "collapse:sentiment:v1")]
    assert clear == []  # no centroid distance (no inspected tweets): drift is neither raised nor cleared
    assert "negative 96" in dict(incidents[0].facts)["Dominant class"]


def test_mixed_served_traffic_is_no_collapse_and_clears_it(db, store, regression):
    _train(db)
    serve(db, ["negative"] * 20 + ["neutral"] * 15 + ["positive"] * 15)
    serve(db, ["negative"] * 100, when=NOW - timedelta(days=9))  # outside the window
    report = drift_report(store, "sentiment", WINDOW)
    assert report.source == "served" and report.live_tweets == 50 and report.dominant_share == 0.4
    assert report.sources[1].share_distance == pytest.approx(0.4 - 1 / 3, abs=1e-3)
    incidents, clear = regression(report.to_dict())
    assert incidents == [] and clear == ["collapse:sentiment:v1"]


def test_a_served_collapse_shows_even_when_the_inspected_tweets_are_mixed(db, store, regression):
    _train(db)
    add_inspected(db, [(i, f"tweet {i}", ["negative", "neutral", "positive"][i % 3]) for i in range(1, 31)])
    serve(db, ["positive"] * 50)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.source == "served" and (report.dominant_label, report.dominant_share) == ("positive", 1.0)
    assert [s.volume for s in report.sources] == [30, 50]
    assert report.sources[0].dominant_share == pytest.approx(1 / 3, abs=1e-5)
    assert [i.kind for i in regression(report.to_dict())[0]] == ["collapse"]


def test_an_inspected_collapse_keeps_the_headline_over_mixed_served_traffic(db, store, regression):
    _train(db)
    add_inspected(db, [(i, f"tweet {i}", "negative") for i in range(1, 31)], top=0.7)
    serve(db, ["negative"] * 20 + ["neutral"] * 15 + ["positive"] * 15)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.source == "inspected"
    assert (report.live_tweets, report.dominant_share) == (30, 1.0)
    assert report.sources[0].mean_confidence == pytest.approx(0.7)
    assert [i.kind for i in regression(report.to_dict())[0]] == ["collapse"]


def test_without_served_traffic_the_report_is_the_inspected_one(db, store):
    _train(db)
    add_inspected(db, [(1, "awful", "negative"), (2, "love", "positive")])
    report = drift_report(store, "sentiment", WINDOW)
    assert report.source == "inspected" and report.live_tweets == 2
    assert report.live_shares == {"negative": 0.5, "positive": 0.5}
    assert [(s.source, s.volume) for s in report.sources] == [("inspected", 2), ("served", 0)]
    assert report.sources[1].dominant_share is None and report.sources[1].share_distance is None


def test_daily_statistics_of_served_traffic_are_computed_per_day(db):
    from model_runner.tweets.stats import compute_daily_stats, served_daily_stats

    add_inspected(db, [(1, "awful", "negative")])  # the label set comes from the newest prediction
    serve(db, ["negative"] * 3 + ["positive"], when=NOW - timedelta(hours=2))
    serve(db, ["neutral"] * 2, when=NOW - timedelta(days=1, hours=2))
    rows = served_daily_stats(db, "sentiment", (NOW - timedelta(days=2)).date(), NOW.date())
    assert [(r.found_by, r.day, r.volume) for r in rows] == [
        ("served", (NOW - timedelta(days=1)).date(), 2),
        ("served", NOW.date(), 4),
    ]
    assert rows[1].counts == {"negative": 3, "neutral": 0, "positive": 1}
    assert rows[1].shares == {"negative": 0.75, "neutral": 0.0, "positive": 0.25}
    assert rows[1].mean_confidence == pytest.approx(0.8) and rows[1].model_versions == ["1"]
    # the inspector's statistics (stored, logged, alerted on) stay about inspected tweets
    inspected = compute_daily_stats(db, "sentiment", NOW.date(), NOW.date())
    assert [(r.found_by, r.volume) for r in inspected] == [("query:acme", 1)]


def test_the_summary_carries_the_served_shares_of_its_window(db, store):
    from model_runner.tweets.summary import summarise

    serve(db, ["negative"] * 3 + ["positive"])
    found = summarise(store, "sentiment", WINDOW)
    assert found.volume == 0 and found.served == {
        "volume": 4,
        "shares": {"negative": 0.75, "positive": 0.25},
        "mean_confidence": pytest.approx(0.8),
    }
    assert summarise(store, "sentiment", WINDOW, found_by="query:acme").served is None
