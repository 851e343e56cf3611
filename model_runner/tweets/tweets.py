"""Inspected tweets: idempotent upserts keyed by tweet id, plus which watched source found each one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from model_runner.db import Database
from model_runner.store.keys import normalise, text_key


@dataclass(frozen=True)
class Tweet:
    tweet_id: int
    text: str
    found_by: str
    author: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class TweetUpsert:
    received: int
    inserted: int  # tweets not stored before
    linked: int  # new (tweet, source) pairs, e.g. a known tweet found by a second query


def upsert_tweets(db: Database, tweets: Iterable[Tweet]) -> TweetUpsert:
    """Store tweets once (first writer wins) and record every source that found them; one transaction."""
    unique: dict[tuple[int, str], Tweet] = {}
    for tweet in tweets:
        unique.setdefault((tweet.tweet_id, tweet.found_by), tweet)
    received = len(unique)
    if not unique:
        return TweetUpsert(0, 0, 0)
    first: dict[int, Tweet] = {}
    for tweet in unique.values():
        first.setdefault(tweet.tweet_id, tweet)
    rows = [
        (t.tweet_id, t.author, t.text, t.created_at, t.found_by, text_key(normalise(t.text)))
        for t in first.values()
    ]
    with db.connect() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO tweets (tweet_id, author, text, created_at, found_by, text_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tweet_id) DO NOTHING",
            rows,
        )
        inserted = max(cur.rowcount, 0)
        cur.executemany(
            "INSERT INTO tweet_sources (tweet_id, found_by) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            list(unique),
        )
        linked = max(cur.rowcount, 0)
    return TweetUpsert(received, inserted, linked)


def backfill_text_hashes(db: Database, limit: int = 10_000) -> int:
    """Hash tweets stored without ``text_hash`` (written by something other than ``upsert_tweets``)."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT tweet_id, text FROM tweets WHERE text_hash IS NULL LIMIT %s", (limit,)
        ).fetchall()
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE tweets SET text_hash = %s WHERE tweet_id = %s",
                    [(text_key(normalise(text)), tweet_id) for tweet_id, text in rows],
                )
    return len(rows)
