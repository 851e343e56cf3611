"""Tweet sources: the replay file, and tweepy against recorded X API v2 responses on a local server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests
from tweetpulse_dags.sources.base import Deadline, RateLimitExhausted, Target, parse_targets
from tweetpulse_dags.sources.factory import DEFAULT_REPLAY_FILE
from tweetpulse_dags.sources.mentions import MENTIONS, MentionsSource, MissingUserContext
from tweetpulse_dags.sources.replay import ReplaySource
from tweetpulse_dags.sources.x_api import XApiSource, build_client

from tests.airflow.fake_x_api import FakeXApi, Reply, recorded

SEARCH, USER, TIMELINE = (
    "/2/tweets/search/recent",
    "/2/users/by/username/orbly",
    "/2/users/1500000000000000001/tweets",
)
QUERY = Target("query", "orbly -is:retweet lang:en")


@pytest.fixture
def x_api():
    server = FakeXApi()
    yield server
    server.close()


def source_for(server: FakeXApi, timeout_s: float = 10) -> XApiSource:
    return XApiSource(build_client("test-bearer", base_url=server.url, timeout_s=timeout_s))


# --- watch list -----------------------------------------------------------------------------------
def test_watch_list_parsing():
    targets = parse_targets([{"query": " acme lang:en "}, {"account": "@Acme_1"}, {"query": "acme lang:en"}])
    assert targets == [Target("query", "acme lang:en"), Target("account", "Acme_1")]
    assert targets[0].key == "query:acme lang:en"
    assert targets[0].slug.startswith("query_acme_lang_en_") and targets[0].slug != targets[1].slug


@pytest.mark.parametrize(
    "raw",
    [[], {"query": "x"}, [{"hashtag": "x"}], [{"query": ""}], [{"account": "not a user!"}], [{"query": 3}]],
)
def test_bad_watch_lists_are_refused(raw):
    with pytest.raises(ValueError, match="watch list"):
        parse_targets(raw)


# --- replay ---------------------------------------------------------------------------------------
def test_the_shipped_replay_file_is_a_plausible_stream():
    rows = [json.loads(line) for line in DEFAULT_REPLAY_FILE.read_text().splitlines()]
    assert 100 <= len(rows) <= 300
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert len({r["text"] for r in rows}) == len(rows)
    assert all(r["author"] and r["created_at"].endswith("Z") for r in rows)


def test_replay_streams_matching_tweets_oldest_first_and_respects_since_id():
    anchor = datetime(2026, 6, 1, 12, tzinfo=UTC)
    source = ReplaySource(DEFAULT_REPLAY_FILE, anchor=anchor)
    first = source.fetch(QUERY, None, 50, Deadline(60))
    assert len(first.tweets) == 50 and first.truncated
    assert all("orbly" in t.text.lower() for t in first.tweets)
    ids = [t.id for t in first.tweets]
    assert ids == sorted(ids)
    second = source.fetch(QUERY, first.newest_id, 10_000, Deadline(60))
    assert min(t.id for t in second.tweets) > first.newest_id and not second.truncated
    assert source.fetch(QUERY, second.newest_id, 10, Deadline(60)).tweets == []
    # times are shifted so the newest tweet of the file is the anchor
    assert max(t.created_at for t in source.tweets) == anchor


def test_replay_accounts_and_exclusions(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [
        {"id": "3", "text": "acme is great", "author": "ann", "created_at": "2026-01-01T00:00:00Z"},
        {"id": "1", "text": "acme is slow", "author": "Acme", "created_at": "2026-01-01T00:00:00Z"},
        {"id": "2", "text": "acme spam giveaway", "author": "bot", "created_at": "2026-01-01T00:00:00Z"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n" + json.dumps({"id": "x"}) + "\n")
    source = ReplaySource(path, shift_to_anchor=False)
    assert [t.id for t in source.fetch(Target("account", "acme"), None, 10, Deadline(5)).tweets] == [1]
    found = source.fetch(Target("query", 'acme -giveaway "is"'), None, 10, Deadline(5)).tweets
    assert [t.id for t in found] == [1, 3]


def test_a_missing_replay_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        ReplaySource(tmp_path / "nope.jsonl").fetch(QUERY, None, 1, Deadline(5))


# --- X API v2 through tweepy -----------------------------------------------------------------------
def test_search_pages_through_recorded_responses(x_api):
    x_api.script(
        SEARCH, Reply(200, recorded("search_recent_page1")), Reply(200, recorded("search_recent_page2"))
    )
    result = source_for(x_api).fetch(QUERY, 1897300000000000001, 100, Deadline(60))

    assert [t.id for t in result.tweets] == sorted(t.id for t in result.tweets)
    assert len(result.tweets) == 5 and result.requests == 2 and not result.truncated
    assert {t.author for t in result.tweets} == {"dana_reads", "chrisp", "mosei"}
    assert result.tweets[-1].created_at == datetime(2026, 3, 10, 11, 58, 3, tzinfo=UTC)
    first, second = x_api.calls(SEARCH)
    assert first.authorization == "Bearer test-bearer"
    assert first.query["query"] == QUERY.value and first.query["since_id"] == "1897300000000000001"
    assert "next_token" not in first.query and second.query["next_token"].startswith("b26v89")


def test_the_per_run_bound_keeps_the_newest_tweets(x_api):
    x_api.script(
        SEARCH, Reply(200, recorded("search_recent_page1")), Reply(200, recorded("search_recent_page2"))
    )
    result = source_for(x_api).fetch(QUERY, None, 2, Deadline(60))
    assert [t.id for t in result.tweets] == [1897300000000000377, 1897300000000000412]
    assert result.truncated and len(x_api.calls(SEARCH)) == 1
    assert x_api.calls(SEARCH)[0].query["max_results"] == "10"  # the API's minimum page


def test_a_bounded_window_fetch_sends_until_id_and_keeps_the_newest(x_api):
    x_api.script(SEARCH, Reply(200, recorded("search_recent_page1")))
    result = source_for(x_api).fetch(
        QUERY, 1897300000000000001, 2, Deadline(60), until_id=1897300000000000500
    )
    (call,) = x_api.calls(SEARCH)
    assert call.query["until_id"] == "1897300000000000500" and call.query["since_id"] == "1897300000000000001"
    assert result.truncated and result.kept == "newest"  # the rest is older than 1897300000000000377
    assert [t.id for t in result.tweets] == [1897300000000000377, 1897300000000000412]


def test_the_replay_keeps_the_oldest_and_honours_until_id():
    source = ReplaySource(DEFAULT_REPLAY_FILE, anchor=datetime(2026, 6, 1, 12, tzinfo=UTC))
    every = source.fetch(QUERY, None, 10_000, Deadline(60)).tweets
    cut = every[30].id
    window = source.fetch(QUERY, every[9].id, 10, Deadline(60), until_id=cut)
    assert window.kept == "oldest" and window.truncated
    assert [t.id for t in window.tweets] == [t.id for t in every[10:20]]
    rest = source.fetch(QUERY, every[19].id, 100, Deadline(60), until_id=cut)
    assert [t.id for t in rest.tweets] == [t.id for t in every[20:30]] and not rest.truncated


def test_account_timeline(x_api):
    x_api.script(USER, Reply(200, recorded("user_orbly")))
    x_api.script(TIMELINE, Reply(200, recorded("users_tweets")))
    result = source_for(x_api).fetch(Target("account", "orbly"), None, 100, Deadline(60))
    assert [t.author for t in result.tweets] == ["orbly", "orbly"]
    assert result.requests == 2


def test_a_429_waits_for_the_reset_then_continues(x_api):
    reset = str(int(time.time()) + 1)
    x_api.script(
        SEARCH,
        Reply(
            429, recorded("too_many_requests"), {"x-rate-limit-reset": reset, "x-rate-limit-remaining": "0"}
        ),
        Reply(200, recorded("search_recent_page2")),
    )
    started = time.monotonic()
    result = source_for(x_api).fetch(QUERY, None, 100, Deadline(60))
    assert len(result.tweets) == 2 and len(x_api.calls(SEARCH)) == 2
    assert 0.5 < time.monotonic() - started < 10


def test_a_reset_beyond_the_budget_fails_at_once(x_api):
    reset = str(int(time.time()) + 900)
    x_api.script(SEARCH, Reply(429, recorded("too_many_requests"), {"x-rate-limit-reset": reset}))
    started = time.monotonic()
    with pytest.raises(RateLimitExhausted, match="resets in"):
        source_for(x_api).fetch(QUERY, None, 100, Deadline(30))
    assert time.monotonic() - started < 5 and len(x_api.calls(SEARCH)) == 1


def test_a_429_without_reset_header_does_not_retry_forever(x_api, monkeypatch):
    import tweetpulse_dags.sources.rate_limit as rate_limit

    pauses: list[float] = []
    monkeypatch.setattr(rate_limit.time, "sleep", pauses.append)
    monkeypatch.setattr(rate_limit, "NO_RESET_PAUSE_S", 5.0)
    x_api.script(SEARCH, Reply(429, recorded("too_many_requests")))
    with pytest.raises(RateLimitExhausted, match="without an x-rate-limit-reset"):
        source_for(x_api).fetch(QUERY, None, 100, Deadline(600))
    assert len(x_api.calls(SEARCH)) == 2 and pauses == [5.0]


def test_server_errors_get_a_few_retries(x_api, monkeypatch):
    import tweetpulse_dags.sources.rate_limit as rate_limit

    monkeypatch.setattr(rate_limit.time, "sleep", lambda s: None)
    x_api.script(SEARCH, Reply(503, {"title": "Service Unavailable"}))
    with pytest.raises(Exception, match="503"):
        source_for(x_api).fetch(QUERY, None, 100, Deadline(600))
    assert len(x_api.calls(SEARCH)) == 3


def test_calls_time_out():
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = build_client("t", base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            client.search_recent_tweets("x")
        assert time.monotonic() - started < 5


def test_x_credentials_come_from_the_connection(monkeypatch):
    from tweetpulse_dags.sources.x_api import credentials_from_connection

    monkeypatch.delenv("AIRFLOW_CONN_X_API", raising=False)
    assert credentials_from_connection() is None
    monkeypatch.setenv("AIRFLOW_CONN_X_API", json.dumps({"conn_type": "http", "password": "tok-123"}))
    assert credentials_from_connection().bearer_token == "tok-123"
    assert credentials_from_connection().base_url is None
    assert "tok-123" not in repr(credentials_from_connection())
    monkeypatch.setenv(
        "AIRFLOW_CONN_X_API",
        json.dumps({"conn_type": "http", "host": "proxy.local", "port": 8443, "password": "t"}),
    )
    assert credentials_from_connection().base_url == "https://proxy.local:8443"


# --- the account's mentions (OAuth 1.0a user context) -------------------------------------------------
ME, MENTIONED = "/2/users/me", "/2/users/1500000000000000001/mentions"
USER_KEYS = {
    "consumer_key": "consumer-key-test",
    "consumer_secret": "consumer-secret-test",
    "access_token": "1500000000000000001-access-token",
    "access_token_secret": "access-token-secret-test",
}


@pytest.fixture
def mentions(x_api, monkeypatch) -> MentionsSource:
    """Built from the ``x_api`` connection as in a task: bearer token, user-context keys, host."""
    conn = {"conn_type": "http", "host": x_api.url, "password": "test-bearer", "extra": USER_KEYS}
    monkeypatch.setenv("AIRFLOW_CONN_X_API", json.dumps(conn))
    x_api.script(ME, Reply(200, recorded("users_me")))
    x_api.script(MENTIONED, Reply(200, recorded("users_mentions")))
    return MentionsSource.from_connection()


def test_mentions_are_read_as_the_account_with_user_context(x_api, mentions):
    result = mentions.fetch(MENTIONS, 1897300000000000300, 100, Deadline(60))

    assert [t.id for t in result.tweets] == [
        1897300000000000399,
        1897300000000000412,
        1897300000000000421,
        1897300000000000433,
        1897300000000000455,
    ]
    assert [t.author for t in result.tweets] == ["chrisp", "dana_reads", "mosei", "orbly", "dana_reads"]
    assert [t.retweet for t in result.tweets] == [False, False, True, False, False]
    assert result.tweets[3].author_id == mentions.account(Deadline(5)).id == 1500000000000000001
    assert result.kept == "newest" and not result.truncated and result.requests == 2
    (me,) = x_api.calls(ME)
    (call,) = x_api.calls(MENTIONED)
    for seen in (me, call):  # OAuth 1.0a signed as the account, never the app's bearer token
        assert seen.authorization.startswith("OAuth ")
        assert 'oauth_consumer_key="consumer-key-test"' in seen.authorization
        assert 'oauth_token="1500000000000000001-access-token"' in seen.authorization
    assert call.query["since_id"] == "1897300000000000300" and call.query["max_results"] == "100"
    assert "referenced_tweets" in call.query["tweet.fields"] and call.query["expansions"] == "author_id"
    # the account is looked up once per source
    mentions.fetch(MENTIONS, 1897300000000000455, 100, Deadline(60))
    assert len(x_api.calls(ME)) == 1 and x_api.calls(MENTIONED)[-1].query["since_id"] == "1897300000000000455"


def test_a_bounded_mentions_fetch_keeps_the_newest(x_api, mentions):
    result = mentions.fetch(MENTIONS, None, 2, Deadline(60), until_id=1897300000000000500)
    assert [t.id for t in result.tweets] == [1897300000000000433, 1897300000000000455]
    assert result.truncated and result.kept == "newest"
    (call,) = x_api.calls(MENTIONED)
    assert call.query["max_results"] == "5" and call.query["until_id"] == "1897300000000000500"


def test_mentions_need_the_user_context_keys(monkeypatch):
    extra = {k: v for k, v in USER_KEYS.items() if k != "access_token_secret"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_X_API", json.dumps({"conn_type": "http", "password": "b", "extra": extra})
    )
    with pytest.raises(MissingUserContext, match="access_token_secret in the x_api connection's extra"):
        MentionsSource.from_connection()
