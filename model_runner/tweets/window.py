"""Time windows over inspected tweets, and the SQL that picks their latest prediction.

A tweet's time is ``created_at`` (when it was posted), falling back to when it was fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @classmethod
    def last_days(cls, days: float, until: datetime | None = None) -> Window:
        end = as_utc(until) if until else datetime.now(UTC)
        return cls(end - timedelta(days=days), end)

    @classmethod
    def between(cls, since: datetime | None, until: datetime | None, *, default_days: float = 1) -> Window:
        end = as_utc(until) if until else datetime.now(UTC)
        start = as_utc(since) if since else end - timedelta(days=default_days)
        if start >= end:
            raise ValueError(f"empty window: since {start.isoformat()} is not before until {end.isoformat()}")
        return cls(start, end)

    def to_dict(self) -> dict:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def as_utc(value: datetime) -> datetime:
    # a naive time from a caller means UTC, never the server's local zone
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TWEET_TIME = "coalesce(t.created_at, t.fetched_at)"

# The newest prediction of each tweet for a task: what the service said most recently.
LATEST_PREDICTION = (
    "JOIN LATERAL (SELECT p.label, p.scores, p.model_version FROM predictions p"
    " WHERE p.tweet_id = t.tweet_id AND p.task = %(task)s ORDER BY p.predicted_at DESC LIMIT 1) l ON true"
)

# Restrict tweets to one watched source (or none: every source).
SOURCE_FILTER = (
    "(%(found_by)s::text IS NULL OR EXISTS (SELECT 1 FROM tweet_sources s"
    " WHERE s.tweet_id = t.tweet_id AND s.found_by = %(found_by)s))"
)

TOP_SCORE = "(SELECT max(v::float8) FROM jsonb_each_text(l.scores) AS kv(k, v))"
