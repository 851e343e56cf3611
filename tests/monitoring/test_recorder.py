"""The served-traffic recorder against a real Postgres: sampling, hashing, text policy, retention,
batching, a full queue and a database that is gone (drop and count, never raise)."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from model_runner.db import Database
from model_runner.monitoring import ServedRecorder
from model_runner.monitoring.store import ServedRow, insert_rows
from model_runner.settings import Settings
from model_runner.store import ExampleStore
from model_runner.store.examples import Example
from model_runner.store.keys import normalise, text_key

TEXTS = ["I love it @acme https://t.co/x", "the app crashed again", "meeting on tuesday"]
LABELS = ["positive", "negative", "neutral"]
CONF = [0.9, 0.8, 0.7]
CLASSES = ("negative", "neutral", "positive")


def make(db: Database, registry: CollectorRegistry | None = None, **settings) -> ServedRecorder:
    values = {"served_sample_rate": 1.0, "served_store_text": False, "served_retention_days": 30.0}
    values.update(settings)
    return ServedRecorder(
        Settings(**values), db, registry or CollectorRegistry(), replica="replica-a", rng=random.Random(7)
    )


def rows(db: Database) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT task, text_hash, text, model_name, model_version, label, confidence, replica"
            " FROM served_predictions ORDER BY id"
        ).fetchall()


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_sample_holds_the_hash_not_the_text(db):
    registry = CollectorRegistry()
    rec = make(db, registry)
    assert rec.record("sentiment", "tweetpulse-sentiment", "3", TEXTS, LABELS, CONF) == 3
    assert rows(db) == []  # nothing is written on the request path
    assert rec.flush_now() == 3
    stored = rows(db)
    assert [r[5] for r in stored] == LABELS
    assert [r[6] for r in stored] == pytest.approx(CONF)
    # the key of the embedding cache and the tweets table: hash of the normalised text
    assert [bytes(r[1]) for r in stored] == [text_key(normalise(t)) for t in TEXTS]
    assert {r[2] for r in stored} == {None}
    expected = ("sentiment", "tweetpulse-sentiment", "3", "replica-a")
    assert {(r[0], r[3], r[4], r[7]) for r in stored} == {expected}
    assert value(registry, "tweetpulse_served_samples_recorded_total", task="sentiment") == 3


def test_the_text_is_kept_only_when_the_setting_allows_it(db):
    rec = make(db, served_store_text=True)
    rec.record("sentiment", "m", "1", TEXTS[:1], LABELS[:1], CONF[:1])
    rec.flush_now()
    # the cleaned text the model saw: mentions and links masked
    assert rows(db)[0][2] == normalise(TEXTS[0]) and "@acme" not in rows(db)[0][2]


def test_sample_rate_zero_stores_nothing_and_a_fraction_samples(db):
    none = make(db, served_sample_rate=0.0)
    assert none.record("sentiment", "m", "1", TEXTS * 10, LABELS * 10, CONF * 10) == 0
    assert none.flush_now() == 0 and rows(db) == []
    half = make(db, served_sample_rate=0.5)
    queued = half.record("sentiment", "m", "1", ["t"] * 1000, ["neutral"] * 1000, [0.5] * 1000)
    assert 400 < queued < 600
    half.flush_now()
    assert len(rows(db)) == queued


def test_a_full_queue_drops_and_counts(db):
    registry = CollectorRegistry()
    rec = ServedRecorder(Settings(), db, registry, queue_size=2)
    assert rec.record("sentiment", "m", "1", TEXTS, LABELS, CONF) == 2
    assert value(registry, "tweetpulse_served_samples_dropped_total", reason="queue_full") == 1
    assert rec.pending == 2


def test_a_database_outage_drops_and_counts_and_never_raises():
    registry = CollectorRegistry()
    gone = Database("postgresql://nobody@127.0.0.1:9/none", connect_timeout_s=1)
    rec = make(gone, registry)
    assert rec.record("sentiment", "m", "1", TEXTS, LABELS, CONF) == 3
    assert rec.flush_now() == 3  # left the queue: dropped
    assert rec.pending == 0
    assert value(registry, "tweetpulse_served_samples_dropped_total", reason="database") == 3
    assert rec.maintain() == 0  # retention fails quietly too


def test_rows_older_than_the_retention_period_are_deleted(db):
    registry = CollectorRegistry()
    rec = make(db, registry, served_retention_days=7)
    now = datetime.now(UTC)
    insert_rows(
        db,
        [
            ServedRow("sentiment", b"old", None, "m", "1", "negative", 0.9, now - timedelta(days=8), "r"),
            ServedRow("sentiment", b"new", None, "m", "1", "negative", 0.9, now - timedelta(days=6), "r"),
        ],
    )
    assert rec.maintain() == 1
    assert [bytes(r[1]) for r in rows(db)] == [b"new"]
    assert value(registry, "tweetpulse_served_samples_deleted_total") == 1


def test_the_background_thread_flushes_in_batches_applies_retention_and_stop_drains(db):
    old = datetime.now(UTC) - timedelta(days=31)
    insert_rows(db, [ServedRow("sentiment", b"expired", None, "m", "1", "neutral", 0.5, old, "r")])
    rec = ServedRecorder(Settings(), db, CollectorRegistry(), batch_size=100, flush_interval_s=0.05)
    asyncio.run(rec.start())
    try:
        rec.record("sentiment", "m", "1", ["x"] * 250, ["neutral"] * 250, [0.6] * 250)
        deadline = time.monotonic() + 10
        while len(rows(db)) != 250 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rows(db)) == 250  # the expired row went at the first cycle (retention: 30 days)
        assert b"expired" not in {bytes(r[1]) for r in rows(db)}
        rec.record("sentiment", "m", "1", ["y"] * 5, ["neutral"] * 5, [0.6] * 5)
    finally:
        asyncio.run(rec.stop())
    assert len(rows(db)) == 255  # stop() wrote what was still queued


def test_gauges_show_the_served_class_shares_and_their_distance_to_the_training_data(db):
    ExampleStore(db).upsert([Example(f"text {i}", LABELS[i % 3], source="data") for i in range(30)])
    registry = CollectorRegistry()
    rec = make(db, registry)
    rec.record("sentiment", "m", "1", ["a"] * 10, ["negative"] * 10, [0.8] * 10, classes=CLASSES)
    rec.refresh_gauges()
    share = value(registry, "tweetpulse_served_class_share", task="sentiment", label="negative")
    assert share == 1.0
    assert value(registry, "tweetpulse_served_class_share", task="sentiment", label="positive") == 0.0
    assert value(registry, "tweetpulse_served_mean_confidence", task="sentiment") == pytest.approx(0.8)
    assert value(registry, "tweetpulse_served_window_predictions", task="sentiment") == 10
    # training shares are a third each: total variation distance 2/3
    distance = value(registry, "tweetpulse_served_class_distance", task="sentiment")
    assert distance == pytest.approx(2 / 3, abs=1e-4)


def test_recording_never_raises_into_the_caller(db):
    rec = make(db)
    # mismatched lengths, a label that is no string: logged and dropped, never an exception
    assert rec.record("sentiment", "m", "1", TEXTS, [], None) == 0
