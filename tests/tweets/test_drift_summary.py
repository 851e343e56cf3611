from datetime import timedelta

import numpy as np
import pytest

from model_runner.store import ExampleStore
from model_runner.store.examples import Example
from model_runner.tweets.drift import drift_report, embed_reference
from model_runner.tweets.summary import summarise
from model_runner.tweets.vectors import embed_window
from model_runner.tweets.window import Window
from tests.tweets.conftest import NOW, add_inspected

WINDOW = Window.last_days(7, until=NOW)
TRAIN = [("awful broken", "negative"), ("meeting tuesday", "neutral"), ("love thanks", "positive")]


def _train(db):
    ExampleStore(db).upsert([Example(t, label, source="data") for t, label in TRAIN])


def _embed(store):
    """What storing tweets (POST /tweets) and POST /drift/reference do before the reads."""
    embed_reference(store, "sentiment")
    embed_window(store, WINDOW)


def test_live_data_like_the_training_data_has_no_drift(db, store):
    _train(db)
    add_inspected(db, [(i + 1, text, label) for i, (text, label) in enumerate(TRAIN)])
    _embed(store)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.centroid_distance == pytest.approx(0, abs=1e-5)
    assert (report.live_tweets, report.live_embedded, report.reference_embedded) == (3, 3, 3)
    assert report.live_shares == report.reference_shares


def test_shifted_live_data_drifts_and_a_collapse_shows_in_the_shares(db, store):
    _train(db)
    add_inspected(db, [(i, f"hate refund worst {i}", "negative") for i in range(1, 10)])
    add_inspected(db, [(10, "love", "positive")])
    add_inspected(db, [(11, "old tweet", "positive")], when=NOW - timedelta(days=8))  # outside the window
    _embed(store)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.centroid_distance > 0.3
    assert report.live_tweets == 10
    assert (report.dominant_label, report.dominant_share) == ("negative", 0.9)
    assert report.reference_shares == {"negative": pytest.approx(1 / 3, abs=1e-5)} | {
        "neutral": pytest.approx(1 / 3, abs=1e-5),
        "positive": pytest.approx(1 / 3, abs=1e-5),
    }


def test_drift_only_reads_what_was_embedded(db, store):
    _train(db)
    add_inspected(db, [(1, "awful", "negative")])
    report = drift_report(store, "sentiment", WINDOW)
    assert report.reference_examples == 3 and report.reference_embedded == 0
    assert report.centroid_distance is None and store.last_stats.requested == 0
    _embed(store)
    assert drift_report(store, "sentiment", WINDOW).centroid_distance is not None


def test_drift_without_tweets_has_no_distance_and_embeds_nothing(db, store):
    _train(db)
    report = drift_report(store, "sentiment", WINDOW)
    assert report.live_tweets == 0 and report.centroid_distance is None and report.dominant_label is None
    assert report.reference_examples == 3 and report.reference_embedded == 0
    # a fresh deployment must not embed the whole training set for an empty window
    assert store.last_stats.requested == 0


def test_summary_picks_the_tweets_nearest_each_class_centroid(db, store):
    negatives = ["awful", "awful hate", "awful meeting", "hate love", "worst tuesday store hours"]
    add_inspected(db, [(i + 1, t, "negative") for i, t in enumerate(negatives)])
    add_inspected(db, [(20, "love great", "positive"), (21, "love great", "positive")])  # same text twice
    add_inspected(db, [(30, "meeting", "neutral")], found_by="account:acme")
    _embed(store)

    summary = summarise(store, "sentiment", WINDOW, per_class=2)

    assert summary.volume == 8
    assert summary.shares == {"negative": 0.625, "positive": 0.25, "neutral": 0.125}
    by_label = {c.label: c for c in summary.classes}
    vectors = store.get_or_compute(negatives)
    centroid = vectors.mean(axis=0)
    cos = vectors @ centroid / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(centroid))
    order = np.argsort(-cos)
    assert cos[order[1]] - cos[order[2]] > 1e-3  # the expected ranking is not a near-tie
    expected = [negatives[i] for i in order[:2]]
    assert [e["text"] for e in by_label["negative"].examples] == expected
    assert len(by_label["positive"].examples) == 1  # a repeated text is shown once
    assert by_label["negative"].examples[0]["similarity"] >= by_label["negative"].examples[1]["similarity"]

    only = summarise(store, "sentiment", WINDOW, found_by="account:acme")
    assert only.volume == 1 and only.classes[0].examples[0]["tweet_id"] == "30"


def test_summary_only_reads_and_vectors_are_computed_once(db, store):
    add_inspected(db, [(1, "awful", "negative"), (2, "love", "positive")])
    summarise(store, "sentiment", WINDOW)
    assert store.encoder.calls == []
    embed_window(store, WINDOW)
    embed_window(store, WINDOW)
    assert summarise(store, "sentiment", WINDOW).volume == 2
    assert sorted(store.encoder.calls) == ["awful", "love"]


def test_an_empty_window_is_refused():
    with pytest.raises(ValueError, match="empty window"):
        Window.between(NOW, NOW - timedelta(days=1))
