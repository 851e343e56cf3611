"""Watched targets, fetched tweets and the interface every tweet source implements."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol


class RateLimitExhausted(RuntimeError):
    """The X API rate limit does not reset within the time this task has left (or gave no reset time)."""


@dataclass(frozen=True)
class Target:
    """A watched query or account, or the authenticated account's mentions (``mentions:me``, added by
    the inspector when replies are on: the only tweets it may answer)."""

    kind: Literal["query", "account", "mentions"]
    value: str

    @property
    def key(self) -> str:
        """What the ModelRunner stores as ``found_by``."""
        return f"{self.kind}:{self.value}"

    @property
    def slug(self) -> str:
        return slug_of(self.key)


def slug_of(found_by: str) -> str:
    """A name safe in Variable keys and alert keys, unique per watched source."""
    readable = re.sub(r"[^a-z0-9]+", "_", found_by.lower()).strip("_")[:40]
    return f"{readable}_{hashlib.sha256(found_by.encode()).hexdigest()[:8]}"


def parse_targets(raw: Any) -> list[Target]:
    """``[{"query": "acme lang:en"}, {"account": "acme"}]`` -> targets; anything else is a clear error."""
    if not isinstance(raw, list) or not raw:
        raise ValueError('the watch list must be a non-empty JSON list like [{"query": "acme lang:en"}]')
    targets: list[Target] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ("query", "account"):
            expected = '{"query": ...} or {"account": ...}'
            raise ValueError(f"watch list item {i}: expected {expected}, got {item!r}")
        kind, value = next(iter(item.items()))
        if not isinstance(value, str) or not value.strip() or len(value) > 512:
            raise ValueError(f"watch list item {i}: {kind} must be a non-empty string (at most 512 chars)")
        value = value.strip().lstrip("@") if kind == "account" else value.strip()
        if kind == "account" and not re.fullmatch(r"\w{1,15}", value):
            raise ValueError(f"watch list item {i}: {value!r} is not an X username")
        target = Target(kind, value)
        if target not in targets:
            targets.append(target)
    return targets


@dataclass(frozen=True)
class FetchedTweet:
    id: int
    text: str
    author: str | None = None
    created_at: datetime | None = None
    author_id: int | None = None  # X user id, where the source knows it
    retweet: bool = False  # a retweet ("RT @..."): stored like any tweet, never answered

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "text": self.text,
            "author": self.author,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class FetchResult:
    """Tweets of the window ``(since_id, until_id)``, oldest first.

    When the bound was reached before the source ran dry (``truncated``), ``kept`` says which end of
    the window was fetched: "newest" (the X API pages newest first: every tweet from the oldest one
    here up to ``until_id`` is fetched, older ones are not) or "oldest" (the replay: every tweet from
    ``since_id`` up to the newest one here is fetched, newer ones are not).
    """

    tweets: list[FetchedTweet] = field(default_factory=list)
    truncated: bool = False  # the per-run bound was reached before the source ran dry
    requests: int = 0
    kept: Literal["newest", "oldest"] = "oldest"

    @property
    def newest_id(self) -> int | None:
        return max((t.id for t in self.tweets), default=None)


class Deadline:
    """The time a task has left, so waiting on a rate limit never outlives ``execution_timeout``."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())


class TweetSource(Protocol):
    name: str

    def fetch(
        self,
        target: Target,
        since_id: int | None,
        limit: int,
        deadline: Deadline,
        until_id: int | None = None,
    ) -> FetchResult:
        """Tweets newer than ``since_id`` (and older than ``until_id``), at most ``limit``, oldest first."""
        ...
