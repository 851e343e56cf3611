"""In-memory stand-ins for unit tests of the DAG helpers (the E2E tests use the real ModelRunner)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tweetpulse_dags.runner_api import Classified
from tweetpulse_dags.runner_client import RunnerError
from tweetpulse_dags.sources.base import Deadline, FetchedTweet, FetchResult, Target


class FakeLedgerRunner:
    """The alert-ledger part of the ModelRunner API."""

    def __init__(self, unreachable: bool = False):
        self.state: dict[str, tuple[str, str | None]] = {}
        self.unreachable = unreachable

    def claim_alert(self, key, kind, summary, lease_s):
        if self.unreachable:
            raise RunnerError(None, "unreachable", "connection refused")
        state, _ = self.state.get(key, ("released", None))
        if state in ("released", "resolved"):
            token = uuid.uuid4().hex
            self.state[key] = ("pending", token)
            return {"granted": True, "token": token, "state": "pending"}
        return {"granted": False, "token": None, "state": state, "sent_at": None}

    def confirm_alert(self, key, token):
        assert self.state[key] == ("pending", token)
        self.state[key] = ("sent", None)

    def release_alert(self, key, token):
        assert self.state[key] == ("pending", token)
        self.state[key] = ("released", None)


@dataclass
class FakeMailer:
    sent: list[tuple[list[str], str, dict]] = field(default_factory=list)
    fail: bool = False

    def send(self, to, subject, html, headers):
        if self.fail:
            raise ConnectionRefusedError("smtp down")
        self.sent.append((to, subject, headers))


@dataclass
class FakeSource:
    tweets: list[FetchedTweet]
    name: str = "fake"

    def fetch(self, target: Target, since_id, limit, deadline: Deadline) -> FetchResult:
        newer = [t for t in self.tweets if since_id is None or t.id > since_id]
        return FetchResult(newer[:limit], len(newer) > limit)


@dataclass
class MemoryCursors:
    values: dict[str, int] = field(default_factory=dict)

    def get(self, target):
        return self.values.get(target.key)

    def set(self, target, since_id):
        self.values[target.key] = since_id


@dataclass
class FakeInspectRunner:
    fail_on: str | None = None
    calls: list[str] = field(default_factory=list)

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail_on:
            raise RunnerError(500, "internal_error", "database went away")

    def store_tweets(self, found_by, tweets):
        self._call("store_tweets")
        return {"inserted": len(tweets)}

    def classify(self, texts, task):
        self._call("classify")
        preds = [
            {"label": "neutral", "scores": {"negative": 0.2, "neutral": 0.5, "positive": 0.3}} for _ in texts
        ]
        return Classified("7", preds)

    def store_predictions(self, task, version, preds):
        self._call("store_predictions")
        return {"inserted": len(preds), "queued_for_review": 0}
