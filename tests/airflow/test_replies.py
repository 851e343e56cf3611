"""Replies follow X's automation rules: only tweets that mention the account are answered, once each;
keyword-search (and replay) results never are. tweepy runs against recorded X API v2 responses on a
local server (GET /2/users/me, GET /2/users/:id/mentions, POST /2/tweets), which records what was posted.

The fast cases use an in-memory ModelRunner (tweets, predictions, the alert ledger); the last test runs
the tweet_inspector DAG with the real ModelRunner and its Postgres ledger.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from tweetpulse_dags import inspector
from tweetpulse_dags.cursors import variable_key
from tweetpulse_dags.replies import reply_text
from tweetpulse_dags.runner_api import Classified
from tweetpulse_dags.sources.base import Deadline, RateLimitExhausted, Target
from tweetpulse_dags.sources.factory import DEFAULT_REPLAY_FILE
from tweetpulse_dags.sources.mentions import MENTIONS, MissingUserContext
from tweetpulse_dags.sources.replay import ReplaySource
from tweetpulse_dags.sources.x_api import XApiSource, build_client

from tests.airflow.conftest import fast, states, stored_variable, xcom
from tests.airflow.fake_x_api import FakeXApi, Reply, recorded
from tests.airflow.fakes import FakeLedgerRunner, MemoryCursors

SEARCH, ME, MENTIONED, TWEETS = (
    "/2/tweets/search/recent",
    "/2/users/me",
    "/2/users/1500000000000000001/mentions",
    "/2/tweets",
)
QUERY = Target("query", "orbly")
NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
POSTING = {"enabled": True, "dry_run": False}
DRY_RUN = {"enabled": True, "dry_run": True}
USER_KEYS = {
    "consumer_key": "consumer-key-test",
    "consumer_secret": "consumer-secret-test",
    "access_token": "1500000000000000001-access-token",
    "access_token_secret": "access-token-secret-test",
}
# users_mentions.json: three users' mentions, the account's own thread reply (433), a retweet (421)
OWN, RETWEET = 1897300000000000433, 1897300000000000421
SEARCH_IDS = {
    1897300000000000412,
    1897300000000000377,
    1897300000000000301,
    1897300000000000288,
    1897300000000000154,
}
# what the in-memory classifier reads in each answerable mention, oldest first
EXPECTED = [
    (1897300000000000399, "Thanks for reaching out! Our sentiment model reads your tweet as neutral (60%)."),
    (1897300000000000412, "Thanks for reaching out! Our sentiment model reads your tweet as negative (80%)."),
    (1897300000000000455, "Thanks for reaching out! Our sentiment model reads your tweet as negative (80%)."),
]
CREATED = Reply(201, recorded("create_tweet"))
FORBIDDEN = {"title": "Forbidden", "detail": "You are not allowed to reply to this Tweet.", "status": 403}


class MemoryRunner(FakeLedgerRunner):
    """The ModelRunner routes inspect_target calls: tweets, predictions and the alert ledger."""

    def __init__(self):
        super().__init__()
        self.tweets: dict[str, dict] = {}
        self.predictions: dict[str, str] = {}

    def store_tweets(self, found_by, tweets):
        new = [t for t in tweets if t["id"] not in self.tweets]
        self.tweets.update({t["id"]: t for t in tweets})
        return {"inserted": len(new)}

    def classify(self, texts, task):
        def one(text):
            if any(word in text.lower() for word in ("bug", "stopped")):
                return {"label": "negative", "scores": {"negative": 0.8, "neutral": 0.15, "positive": 0.05}}
            return {"label": "neutral", "scores": {"negative": 0.1, "neutral": 0.6, "positive": 0.3}}

        return Classified("3", [one(t) for t in texts])

    def store_predictions(self, task, version, preds):
        self.predictions.update({p["tweet_id"]: p["label"] for p in preds})
        return {"inserted": len(preds), "queued_for_review": 0}

    def answered(self) -> set[int]:
        return {int(k.split(":")[1]) for k, (state, _) in self.state.items() if state == "sent"}


@pytest.fixture
def x_api(monkeypatch):
    """The ``x_api`` connection as in production (bearer token, user-context keys) on the fake API."""
    server = FakeXApi()
    conn = {"conn_type": "http", "host": server.url, "password": "test-bearer", "extra": USER_KEYS}
    monkeypatch.setenv("AIRFLOW_CONN_X_API", json.dumps(conn))
    server.script(
        SEARCH, Reply(200, recorded("search_recent_page1")), Reply(200, recorded("search_recent_page2"))
    )
    server.script(ME, Reply(200, recorded("users_me")))
    server.script(MENTIONED, Reply(200, recorded("users_mentions")))
    server.script(f"POST {TWEETS}", CREATED)
    yield server
    server.close()


def inspect(x_api, target, runner, cursors, *, reply=POSTING, source=None, now=NOW, deadline=60.0):
    return inspector.inspect_target(
        {"kind": target.kind, "value": target.value},
        runner=runner,
        source=source or XApiSource(build_client("test-bearer", base_url=x_api.url)),
        cursors=cursors,
        tasks=["sentiment"],
        settings={"max_tweets_per_target": 100, "inference_batch": 64},
        deadline=Deadline(deadline),
        reply_settings=reply,
        now=now,
    )


def replied_to(x_api) -> list[int]:
    return [int(body["reply"]["in_reply_to_tweet_id"]) for body in x_api.posted()]


def test_keyword_search_and_replay_results_are_never_answered(x_api):
    runner, cursors = MemoryRunner(), MemoryCursors()
    found = inspect(x_api, QUERY, runner, cursors)
    replay = ReplaySource(DEFAULT_REPLAY_FILE, anchor=NOW)
    replayed = inspect(x_api, Target("query", "orbly -is:retweet lang:en"), runner, cursors, source=replay)

    assert found["fetched"] == 5 and replayed["fetched"] > 50  # stored and classified as usual
    assert set(runner.predictions) >= {str(i) for i in SEARCH_IDS}
    assert x_api.posted() == [] and runner.state == {}  # nothing posted, nothing even claimed
    assert x_api.calls(ME) == [] and x_api.calls(MENTIONED) == []


def test_each_mention_gets_one_reply_as_the_account(x_api):
    runner, cursors = MemoryRunner(), MemoryCursors()
    report = inspect(x_api, MENTIONS, runner, cursors)

    assert x_api.posted() == [
        {"text": text, "reply": {"in_reply_to_tweet_id": str(i)}} for i, text in EXPECTED
    ]
    for call in x_api.calls(TWEETS, "POST"):  # posted as the account (OAuth 1.0a), not with the app's token
        assert call.authorization.startswith("OAuth ")
        assert 'oauth_token="1500000000000000001-access-token"' in call.authorization
    assert report["replies"] == {"posted": 3, "skipped_own_tweet": 1, "skipped_retweet": 1}
    assert report["target"] == "mentions:me" and report["fetched"] == 5
    assert len(runner.tweets) == 5  # every mention is stored and classified, answered or not
    assert runner.answered() == {i for i, _ in EXPECTED}
    assert cursors.values == {"mentions:me": 1897300000000000455}


def test_the_accounts_own_tweet_is_not_answered(x_api):
    own = recorded("users_mentions")
    own["data"] = [t for t in own["data"] if t["id"] == str(OWN)]
    own["meta"] = {"newest_id": str(OWN), "oldest_id": str(OWN), "result_count": 1}
    x_api.script(MENTIONED, Reply(200, own))
    runner, cursors = MemoryRunner(), MemoryCursors()
    report = inspect(x_api, MENTIONS, runner, cursors)

    assert report["fetched"] == 1 and str(OWN) in runner.predictions  # read and classified
    assert x_api.posted() == [] and runner.state == {}
    assert report["replies"] == {"skipped_own_tweet": 1}
    assert cursors.values == {"mentions:me": OWN}


def test_a_retry_of_the_same_run_posts_nothing_again(x_api):
    x_api.script(
        MENTIONED,
        Reply(200, recorded("users_mentions")),
        Reply(200, recorded("users_mentions")),
        Reply(200, recorded("empty")),
    )
    runner = MemoryRunner()
    inspect(x_api, MENTIONS, runner, MemoryCursors())
    assert len(x_api.posted()) == 3
    # the retry of an attempt that posted but died before its cursor moved reads the same mentions
    retry_cursors = MemoryCursors()
    again = inspect(x_api, MENTIONS, runner, retry_cursors)
    assert again["fetched"] == 5 and len(x_api.posted()) == 3
    assert again["replies"] == {"already_answered": 3, "skipped_own_tweet": 1, "skipped_retweet": 1}
    # the next run asks only for newer mentions
    later = inspect(x_api, MENTIONS, runner, retry_cursors)
    assert later["fetched"] == 0 and len(x_api.posted()) == 3
    assert x_api.calls(MENTIONED)[-1].query["since_id"] == "1897300000000000455"


def test_a_429_on_posting_waits_for_the_reset_then_answers(x_api):
    limited = Reply(429, recorded("too_many_requests"), {"x-rate-limit-reset": str(int(time.time()) + 1)})
    x_api.script(f"POST {TWEETS}", limited, CREATED)
    runner, cursors = MemoryRunner(), MemoryCursors()
    started = time.monotonic()
    report = inspect(x_api, MENTIONS, runner, cursors)

    assert 0.5 < time.monotonic() - started < 10
    first = EXPECTED[0][0]
    assert replied_to(x_api) == [first] + [i for i, _ in EXPECTED]  # the refused attempt, then one each
    assert report["replies"]["posted"] == 3 and runner.answered() == {i for i, _ in EXPECTED}
    assert cursors.values == {"mentions:me": 1897300000000000455}


@pytest.mark.parametrize("reset", ["beyond the task's time", "no reset header"])
def test_a_429_that_outlasts_the_task_fails_it_and_the_retry_answers_the_rest(x_api, monkeypatch, reset):
    import tweetpulse_dags.sources.rate_limit as rate_limit

    pauses: list[float] = []
    monkeypatch.setattr(rate_limit.time, "sleep", pauses.append)
    headers = {"x-rate-limit-reset": str(int(time.time()) + 900)} if reset.startswith("beyond") else {}
    limited = Reply(429, recorded("too_many_requests"), headers)
    # the first reply goes out, then X answers 429 (the existing rate-limit path decides what follows)
    x_api.script(f"POST {TWEETS}", CREATED, *([limited] * (1 if headers else 2)), CREATED)
    runner, cursors = MemoryRunner(), MemoryCursors()

    with pytest.raises(RateLimitExhausted):
        inspect(x_api, MENTIONS, runner, cursors)
    ids = [i for i, _ in EXPECTED]
    tries = 1 if headers else 2  # a 429 without a reset time is retried once, after one pause
    assert replied_to(x_api) == [ids[0]] + [ids[1]] * tries
    assert pauses == ([] if headers else [rate_limit.NO_RESET_PAUSE_S])
    assert cursors.values == {}  # the cursor stays: the retry reads these mentions again
    assert runner.answered() == {ids[0]} and runner.state[f"reply:{ids[1]}"][0] == "released"

    retry = inspect(x_api, MENTIONS, runner, cursors)
    assert replied_to(x_api)[-2:] == ids[1:]  # the rest, once each; the first is not answered twice
    assert retry["replies"]["posted"] == 2 and retry["replies"]["already_answered"] == 1
    assert runner.answered() == set(ids) and cursors.values == {"mentions:me": 1897300000000000455}


def test_a_reply_x_refuses_is_skipped_and_the_rest_answered(x_api):
    x_api.script(f"POST {TWEETS}", Reply(403, FORBIDDEN), CREATED)
    runner, cursors = MemoryRunner(), MemoryCursors()
    report = inspect(x_api, MENTIONS, runner, cursors)

    assert replied_to(x_api) == [i for i, _ in EXPECTED]
    assert report["replies"]["refused"] == 1 and report["replies"]["posted"] == 2
    assert runner.answered() == {i for i, _ in EXPECTED[1:]}
    assert cursors.values == {"mentions:me": 1897300000000000455}  # one refusal does not block the rest


def test_a_reply_that_may_have_been_posted_is_not_posted_again(x_api):
    x_api.script(f"POST {TWEETS}", Reply(503, {"title": "Service Unavailable", "status": 503}), CREATED)
    runner = MemoryRunner()
    with pytest.raises(Exception, match="503"):
        inspect(x_api, MENTIONS, runner, MemoryCursors())
    first = EXPECTED[0][0]
    assert runner.state[f"reply:{first}"][0] == "pending"  # not released: X may have posted it

    retry = inspect(x_api, MENTIONS, runner, MemoryCursors())
    assert replied_to(x_api) == [first] + [i for i, _ in EXPECTED[1:]]
    assert retry["replies"]["in_flight"] == 1 and retry["replies"]["posted"] == 2


def test_dry_run_logs_only_the_mentions(x_api, caplog):
    runner, cursors = MemoryRunner(), MemoryCursors()
    with caplog.at_level(logging.INFO, logger="tweetpulse_dags.replies"):
        inspect(x_api, QUERY, runner, cursors, reply=DRY_RUN)
        report = inspect(x_api, MENTIONS, runner, cursors, reply=DRY_RUN)

    logged = [r.getMessage() for r in caplog.records if "would reply" in r.getMessage()]
    assert logged == [f"[dry run] would reply to mention {i}: {text}" for i, text in EXPECTED]
    assert x_api.posted() == [] and runner.state == {}
    assert report["replies"] == {"would_reply": 3, "skipped_own_tweet": 1, "skipped_retweet": 1}
    assert cursors.values["mentions:me"] == 1897300000000000455  # a mention is considered once


def test_mentions_older_than_a_day_are_not_answered(x_api):
    runner = MemoryRunner()
    report = inspect(x_api, MENTIONS, runner, MemoryCursors(), now=NOW + timedelta(days=2))
    assert x_api.posted() == [] and report["replies"]["skipped_too_old"] == 3


def test_mentions_are_read_only_when_replies_can_happen(x_api, monkeypatch):
    runner = MemoryRunner()
    off = inspect(x_api, MENTIONS, runner, MemoryCursors(), reply={"enabled": False, "dry_run": False})
    replay = ReplaySource(DEFAULT_REPLAY_FILE, anchor=NOW)
    replayed = inspect(x_api, MENTIONS, runner, MemoryCursors(), source=replay)  # an offline run
    assert off["fetched"] == replayed["fetched"] == 0 and x_api.seen == [] and runner.tweets == {}

    bare = {"conn_type": "http", "host": x_api.url, "password": "test-bearer"}  # no user-context keys
    monkeypatch.setenv("AIRFLOW_CONN_X_API", json.dumps(bare))
    assert inspect(x_api, MENTIONS, runner, MemoryCursors(), reply=DRY_RUN)["fetched"] == 0
    with pytest.raises(MissingUserContext, match="consumer_key"):
        inspect(x_api, MENTIONS, runner, MemoryCursors())


def test_the_watch_list_gains_the_mentions_only_with_replies_on(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": "orbly"}]))
    monkeypatch.delenv("AIRFLOW_VAR_TWEETPULSE_REPLY", raising=False)
    assert inspector.load_targets() == [{"kind": "query", "value": "orbly"}]
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_REPLY", json.dumps({"enabled": True}))  # dry run by default
    assert inspector.load_targets() == [
        {"kind": "query", "value": "orbly"},
        {"kind": "mentions", "value": "me"},
    ]


# --- through Airflow, with the real ModelRunner and its ledger ---------------------------------------------
def test_the_dag_answers_mentions_once_and_never_search_results(
    dagbag, runner, mailbox, variables, x_api, monkeypatch
):
    from airflow.models import Variable

    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": "orbly"}]))
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_REPLY", json.dumps(POSTING))
    x_api.script(
        SEARCH,
        Reply(200, recorded("search_recent_page1")),
        Reply(200, recorded("search_recent_page2")),
        Reply(200, recorded("empty")),
    )
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "x", "digest": "skip"}

    first = dag.test(logical_date=NOW, run_conf=conf)
    assert set(states(first).values()) == {"success"}, states(first)
    answered = {i for i, _ in EXPECTED}
    # one POST per mention; none for the search results (412 was found by both: answered as a mention)
    assert sorted(replied_to(x_api)) == sorted(answered)
    assert not set(replied_to(x_api)) & (SEARCH_IDS - answered) and len(SEARCH_IDS - answered) == 4
    rows = runner.sql(
        "SELECT tweet_id, label, scores FROM predictions WHERE task = 'sentiment' AND tweet_id = ANY(%s)",
        list(answered),
    )
    possible = {(r[0], reply_text(r[1], max(r[2].values()))) for r in rows}
    for body in x_api.posted():
        assert (int(body["reply"]["in_reply_to_tweet_id"]), body["text"]) in possible
    searched, mentioned = (xcom(first, "inspect", map_index=i) for i in range(2))
    assert searched["target"] == "query:orbly" and "replies" not in searched and searched["fetched"] == 5
    assert mentioned["target"] == "mentions:me" and mentioned["replies"]["posted"] == 3
    assert stored_variable(variable_key(MENTIONS)) == "1897300000000000455"
    ledger = set(runner.sql("SELECT key, state FROM alerts WHERE kind = 'reply'"))
    assert ledger == {(f"reply:{i}", "sent") for i in answered}

    # a retry that reads the same mentions again (its cursor did not move) posts nothing
    Variable.delete(variable_key(MENTIONS))
    second = dag.test(logical_date=NOW + timedelta(hours=1), run_conf=conf)
    assert set(states(second).values()) == {"success"}, states(second)
    assert xcom(second, "inspect", map_index=1)["replies"]["already_answered"] == 3
    assert len(x_api.posted()) == 3
