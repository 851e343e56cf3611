"""Replay: tweets streamed from a local JSON Lines file, so the inspector runs end to end offline.

Each line is ``{"id", "text", "author", "created_at"}``. A run returns the oldest matching tweets newer
than ``since_id`` (at most ``limit``), so successive runs walk through the file like a live stream and
a bounded run never leaves a gap: ``since_id`` moves to the newest tweet returned.
Times can be shifted so the file's newest tweet lands at the run's time: "the last 7 days" then
always has data. A query matches like a simple X search: every plain term (quotes keep phrases)
must occur, ``-term`` must not, and operators such as ``lang:en`` are ignored.
"""

from __future__ import annotations

import json
import logging
import shlex
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from tweetpulse_dags.sources.base import Deadline, FetchedTweet, FetchResult, Target

log = logging.getLogger(__name__)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def query_matcher(query: str):
    try:
        terms = shlex.split(query)
    except ValueError:
        terms = query.split()
    required = [t.lower() for t in terms if ":" not in t and not t.startswith("-") and t.upper() != "OR"]
    excluded = [t[1:].lower() for t in terms if t.startswith("-") and ":" not in t and len(t) > 1]

    def matches(text: str) -> bool:
        low = text.lower()
        return all(t in low for t in required) and not any(t in low for t in excluded)

    return matches


class ReplaySource:
    name = "replay"

    def __init__(self, path: Path | str, *, anchor: datetime | None = None, shift_to_anchor: bool = True):
        self.path = Path(path)
        self.anchor = anchor or datetime.now(UTC)
        self.shift_to_anchor = shift_to_anchor

    @cached_property
    def tweets(self) -> list[FetchedTweet]:
        if not self.path.is_file():
            raise FileNotFoundError(f"replay file {self.path} does not exist (see tweetpulse_replay_file)")
        rows: list[FetchedTweet] = []
        skipped = 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                when = _parse_time(row.get("created_at"))
                tweet = FetchedTweet(int(row["id"]), str(row["text"]), row.get("author"), when)
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            if tweet.text.strip():
                rows.append(tweet)
        if skipped:
            log.warning("replay file %s: skipped %d malformed lines", self.path, skipped)
        rows.sort(key=lambda t: t.id)
        return self._shifted(rows)

    def _shifted(self, rows: list[FetchedTweet]) -> list[FetchedTweet]:
        newest = max((t.created_at for t in rows if t.created_at), default=None)
        if not self.shift_to_anchor or newest is None:
            return rows
        delta = self.anchor - newest
        return [
            FetchedTweet(t.id, t.text, t.author, t.created_at + delta if t.created_at else None) for t in rows
        ]

    def fetch(
        self,
        target: Target,
        since_id: int | None,
        limit: int,
        deadline: Deadline,
        until_id: int | None = None,
    ) -> FetchResult:
        if target.kind == "account":
            wanted = target.value.lower()
            matching = [t for t in self.tweets if (t.author or "").lower() == wanted]
        else:
            matches = query_matcher(target.value)
            matching = [t for t in self.tweets if matches(t.text)]
        newer = [
            t
            for t in matching
            if (since_id is None or t.id > since_id) and (until_id is None or t.id < until_id)
        ]
        return FetchResult(tweets=newer[:limit], truncated=len(newer) > limit, requests=0, kept="oldest")
