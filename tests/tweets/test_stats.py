from datetime import timedelta

import pytest

from model_runner.settings import Settings
from model_runner.tweets.stats import (
    compute_daily_stats,
    read_daily_stats,
    set_mlflow_run,
    store_daily_stats,
)
from model_runner.tweets.stats_mlflow import EXPERIMENT, log_daily_stats
from model_runner.wiring import Components
from tests.tweets.conftest import NOW, add_inspected

DAY = NOW.date()


def _plant(db):
    add_inspected(
        db, [(1, "awful", "negative"), (2, "hate it", "negative"), (3, "love", "positive")], top=0.8
    )
    add_inspected(db, [(4, "meeting", "neutral")], top=0.5)
    add_inspected(db, [(5, "great", "positive")], found_by="account:acme", when=NOW - timedelta(days=1))


def test_daily_stats_per_source_and_day(db):
    _plant(db)
    stats = {
        (s.found_by, s.day): s for s in compute_daily_stats(db, "sentiment", DAY - timedelta(days=7), DAY)
    }

    today = stats[("query:acme", DAY)]
    assert today.volume == 4
    assert today.counts == {"negative": 2, "neutral": 1, "positive": 1}
    assert today.shares == {"negative": 0.5, "neutral": 0.25, "positive": 0.25}
    assert today.mean_confidence == pytest.approx((0.8 * 3 + 0.5) / 4, abs=1e-6)
    assert today.model_versions == ["1"]
    yesterday = stats[("account:acme", DAY - timedelta(days=1))]
    assert yesterday.shares == {"negative": 0.0, "neutral": 0.0, "positive": 1.0}
    assert set(stats) == {("query:acme", DAY), ("account:acme", DAY - timedelta(days=1))}

    only = compute_daily_stats(db, "sentiment", DAY, DAY, found_by="account:acme")
    assert only == []


def test_the_latest_prediction_of_a_tweet_counts(db):
    add_inspected(db, [(1, "awful", "negative")])
    add_inspected(db, [(1, "awful", "positive")], version="2")
    (stat,) = compute_daily_stats(db, "sentiment", DAY, DAY)
    assert stat.counts["positive"] == 1 and stat.volume == 1
    assert stat.model_versions == ["2"]


def test_storing_unchanged_stats_changes_nothing(db):
    _plant(db)
    first = store_daily_stats(db, compute_daily_stats(db, "sentiment", DAY - timedelta(days=1), DAY))
    assert all(s.changed for s in first)
    again = store_daily_stats(db, compute_daily_stats(db, "sentiment", DAY - timedelta(days=1), DAY))
    assert not any(s.changed for s in again)

    add_inspected(db, [(6, "worst", "negative")])
    third = {s.found_by: s for s in store_daily_stats(db, compute_daily_stats(db, "sentiment", DAY, DAY))}
    assert third["query:acme"].changed and third["query:acme"].volume == 5
    stored = read_daily_stats(db, "sentiment", DAY, DAY, found_by="query:acme")
    assert [s.volume for s in stored] == [5]


def test_stats_are_logged_to_one_mlflow_run_per_day_and_source(db, tmp_path):
    from mlflow import MlflowClient

    settings = Settings(home=tmp_path / "home", database_url=db.url)
    _plant(db)

    def run(remember=True):
        stats = store_daily_stats(db, compute_daily_stats(db, "sentiment", DAY - timedelta(days=1), DAY))
        keep = (lambda s, r: set_mlflow_run(db, s, r)) if remember else (lambda s, r: None)
        return log_daily_stats(Components(settings).mlflow, settings, stats, keep)

    assert run() == 2
    assert run() == 0  # nothing changed: nothing logged
    add_inspected(db, [(7, "refund", "negative")])
    assert run() == 1

    client = MlflowClient(settings.tracking_uri())
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    today = next(r for r in runs if r.data.tags["found_by"] == "query:acme")
    assert today.data.metrics["volume"] == 5
    assert today.data.metrics["share_negative"] == pytest.approx(0.6)
    assert [m.value for m in client.get_metric_history(today.info.run_id, "volume")] == [4, 5]
