from datetime import UTC, datetime

import pytest

from model_runner.store import normalise, text_key
from model_runner.tweets.predictions import TweetPrediction, UnknownTweets, upsert_predictions
from model_runner.tweets.review import list_review
from model_runner.tweets.tweets import Tweet, backfill_text_hashes, upsert_tweets
from tests.tweets.conftest import scores_for

WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def _count(db, table: str) -> int:
    with db.connect() as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_tweets_are_stored_once_and_every_source_is_remembered(db):
    batch = [Tweet(1, "love it @acme", "query:acme", "ann", WHEN), Tweet(2, "meh", "query:acme")]
    first = upsert_tweets(db, batch)
    again = upsert_tweets(db, batch)
    other = upsert_tweets(db, [Tweet(1, "love it @acme", "account:acme", "ann", WHEN)])

    assert (first.inserted, first.linked) == (2, 2)
    assert (again.inserted, again.linked) == (0, 0)
    assert (other.inserted, other.linked) == (0, 1)
    assert _count(db, "tweets") == 2
    assert _count(db, "tweet_sources") == 3
    with db.connect() as conn:
        found_by, text_hash = conn.execute(
            "SELECT found_by, text_hash FROM tweets WHERE tweet_id = 1"
        ).fetchone()
    assert found_by == "query:acme"  # the first finder stays
    assert bytes(text_hash) == text_key(normalise("love it @acme"))


def test_a_batch_with_a_repeated_id_keeps_the_first_copy(db):
    result = upsert_tweets(db, [Tweet(5, "first", "q"), Tweet(5, "second", "q")])
    assert (result.received, result.inserted) == (1, 1)
    with db.connect() as conn:
        assert conn.execute("SELECT text FROM tweets WHERE tweet_id = 5").fetchone()[0] == "first"


def test_backfill_hashes_tweets_written_without_one(db):
    with db.connect() as conn:
        conn.execute("INSERT INTO tweets (tweet_id, text, found_by) VALUES (9, 'raw  text', 'x')")
    assert backfill_text_hashes(db) == 1
    assert backfill_text_hashes(db) == 0
    with db.connect() as conn:
        (h,) = conn.execute("SELECT text_hash FROM tweets WHERE tweet_id = 9").fetchone()
    assert bytes(h) == text_key("raw text")


def test_predictions_are_idempotent_and_unsure_ones_are_queued_once(db):
    upsert_tweets(db, [Tweet(i, f"tweet {i}", "q") for i in (1, 2, 3)])
    preds = [
        TweetPrediction(1, "positive", scores_for("positive", 0.9)),
        TweetPrediction(2, "neutral", scores_for("neutral", 0.4)),
        TweetPrediction(3, "negative", scores_for("negative", 0.59)),
    ]
    first = upsert_predictions(db, "sentiment", "3", preds, review_threshold=0.6)
    again = upsert_predictions(db, "sentiment", "3", preds, review_threshold=0.6)
    newer = upsert_predictions(db, "sentiment", "4", preds, review_threshold=0.6)

    assert (first.inserted, first.queued_for_review) == (3, 2)
    assert (again.inserted, again.queued_for_review) == (0, 0)
    assert (newer.inserted, newer.queued_for_review) == (3, 0)  # a new version predicts, no re-queue
    total, items = list_review(db, "sentiment")
    assert total == 2
    assert [i.tweet_id for i in items] == [2, 3]  # least confident first
    assert items[0].text == "tweet 2"


def test_a_text_that_is_already_labelled_is_not_queued(db):
    upsert_tweets(db, [Tweet(1, "known  text", "q")])
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO labelled_examples (task, text, text_hash, label, source)"
            " VALUES ('sentiment', 'known text', %s, 'neutral', 'data')",
            (text_key("known text"),),
        )
    result = upsert_predictions(
        db,
        "sentiment",
        "1",
        [TweetPrediction(1, "neutral", scores_for("neutral", 0.4))],
        review_threshold=0.6,
    )
    assert result.queued_for_review == 0


def test_predictions_for_unknown_tweets_are_refused_and_nothing_is_stored(db):
    upsert_tweets(db, [Tweet(1, "hello", "q")])
    preds = [TweetPrediction(1, "neutral", scores_for("neutral")), TweetPrediction(77, "neutral", {})]
    with pytest.raises(UnknownTweets, match="77") as info:
        upsert_predictions(db, "sentiment", "1", preds, review_threshold=0.6)
    assert info.value.tweet_ids == [77]
    assert _count(db, "predictions") == 0
