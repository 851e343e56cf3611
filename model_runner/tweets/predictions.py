"""Predictions of inspected tweets: idempotent upserts, and the unsure ones queued for human review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from model_runner.db import Database
from model_runner.errors import TweetpulseError


class UnknownTweets(TweetpulseError, ValueError):
    """Predictions for tweets that were never stored (POST the tweets first)."""

    status, type = 422, "invalid_request"

    def __init__(self, tweet_ids: Sequence[int]):
        shown = ", ".join(str(t) for t in list(tweet_ids)[:10])
        more = f" and {len(tweet_ids) - 10} more" if len(tweet_ids) > 10 else ""
        super().__init__(f"unknown tweet ids: {shown}{more}; store the tweets before their predictions")
        self.tweet_ids = list(tweet_ids)

    def details(self) -> dict:
        return {"tweet_ids": [str(t) for t in self.tweet_ids]}


@dataclass(frozen=True)
class TweetPrediction:
    tweet_id: int
    label: str
    scores: dict[str, float]

    @property
    def top_score(self) -> float:
        return max(self.scores.values()) if self.scores else 0.0


@dataclass(frozen=True)
class PredictionUpsert:
    received: int
    inserted: int
    queued_for_review: int


def upsert_predictions(
    db: Database,
    task: str,
    model_version: str,
    predictions: Sequence[TweetPrediction],
    *,
    review_threshold: float,
) -> PredictionUpsert:
    """Store each (tweet, task, model version) prediction once; queue the unsure ones for review.

    A tweet goes to the review queue once per task, and never when its text is already labelled.
    """
    by_id = {p.tweet_id: p for p in predictions}
    if not by_id:
        return PredictionUpsert(0, 0, 0)
    with db.connect() as conn, conn.cursor() as cur:
        hashes = dict(
            cur.execute(
                "SELECT tweet_id, text_hash FROM tweets WHERE tweet_id = ANY(%s)", (list(by_id),)
            ).fetchall()
        )
        missing = sorted(set(by_id) - set(hashes))
        if missing:
            raise UnknownTweets(missing)
        cur.executemany(
            "INSERT INTO predictions (tweet_id, task, model_version, label, scores)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(p.tweet_id, task, model_version, p.label, Jsonb(p.scores)) for p in by_id.values()],
        )
        inserted = max(cur.rowcount, 0)
        unsure = [p for p in by_id.values() if p.top_score < review_threshold and hashes[p.tweet_id]]
        queued = 0
        if unsure:
            cur.executemany(
                "INSERT INTO review_queue"
                " (task, tweet_id, text_hash, model_version, predicted_label, top_score)"
                " SELECT %(task)s, %(id)s, %(hash)s, %(version)s, %(label)s, %(score)s"
                " WHERE NOT EXISTS (SELECT 1 FROM labelled_examples"
                "                   WHERE task = %(task)s AND text_hash = %(hash)s)"
                " ON CONFLICT (task, tweet_id) DO NOTHING",
                [
                    {
                        "task": task,
                        "id": p.tweet_id,
                        "hash": hashes[p.tweet_id],
                        "version": model_version,
                        "label": p.label,
                        "score": p.top_score,
                    }
                    for p in unsure
                ],
            )
            queued = max(cur.rowcount, 0)
    return PredictionUpsert(len(by_id), inserted, queued)
