"""Pipeline fixtures: a real Postgres (tests/conftest.py) and an encoder whose vectors are predictable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from model_runner.store import EmbeddingStore
from model_runner.tweets.predictions import TweetPrediction, upsert_predictions
from model_runner.tweets.tweets import Tweet, upsert_tweets

GROUPS = {
    "negative": {"awful", "broken", "hate", "refund", "worst"},
    "neutral": {"meeting", "store", "tuesday", "update", "hours"},
    "positive": {"love", "great", "thanks", "amazing", "best"},
}
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class KeywordEncoder:
    """Vectors = keyword counts per class plus two hashed buckets: centroids are easy to reason about."""

    encoder_id = "keyword-test-encoder"
    revision = "v1"
    dim = 5

    def __init__(self):
        self.calls: list[str] = []

    def encode(self, texts, *, progress=False):
        self.calls.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                for j, words in enumerate(GROUPS.values()):
                    out[i, j] += word in words
                bucket = 3 + hashlib.sha256(word.encode()).digest()[0] % 2
                out[i, bucket] += 0.1
        return out


@pytest.fixture
def store(db) -> EmbeddingStore:
    return EmbeddingStore(db, KeywordEncoder())


def scores_for(label: str, top: float = 0.9) -> dict[str, float]:
    rest = (1 - top) / 2
    return {name: (top if name == label else rest) for name in GROUPS}


def add_inspected(
    db,
    rows: list[tuple[int, str, str]],
    *,
    found_by: str = "query:acme",
    when: datetime = NOW - timedelta(hours=1),
    top: float = 0.9,
    version: str = "1",
    task: str = "sentiment",
) -> None:
    """Store (tweet_id, text, predicted label) rows as tweets of one source with their predictions."""
    upsert_tweets(db, [Tweet(tid, text, found_by, "someone", when) for tid, text, _ in rows])
    preds = [TweetPrediction(tid, label, scores_for(label, top)) for tid, _, label in rows]
    upsert_predictions(db, task, version, preds, review_threshold=0.6)
