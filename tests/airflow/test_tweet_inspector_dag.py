"""tweet_inspector end to end: replay and tweepy (recorded X API v2 responses) sources, idempotent
re-runs, the cursor commit point, bursts beyond the per-run bound (backfill, backlog alert), MLflow
statistics, negative-sentiment alerts and the digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from tweetpulse_dags.cursors import backfill_key, variable_key
from tweetpulse_dags.sources.base import Deadline, Target
from tweetpulse_dags.sources.factory import DEFAULT_REPLAY_FILE
from tweetpulse_dags.sources.replay import ReplaySource

from tests.airflow.conftest import fast, states, stored_variable, xcom
from tests.airflow.fake_x_api import Corpus, FakeXApi, Reply, recorded

ANCHOR = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
REPLAY_TARGETS = [Target("query", "orbly -is:retweet lang:en"), Target("account", "orbly")]


def _replay_ids() -> set[int]:
    source = ReplaySource(DEFAULT_REPLAY_FILE, anchor=ANCHOR)
    return {t.id for target in REPLAY_TARGETS for t in source.fetch(target, None, 10_000, Deadline(5)).tweets}


def _count(runner, table: str, ids: set[int]) -> int:
    return runner.sql(f"SELECT count(*) FROM {table} WHERE tweet_id = ANY(%s)", list(ids))[0][0]


def _clear_cursors(targets) -> None:
    from airflow.models import Variable

    for target in targets:
        Variable.delete(variable_key(target))


def test_replay_runs_end_to_end_and_reruns_store_nothing_twice(dagbag, runner, mailbox, variables):
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "replay", "max_tweets": 500, "digest": "now"}
    ids = _replay_ids()

    first = dag.test(logical_date=ANCHOR, run_conf=conf)
    assert set(states(first).values()) == {"success"}, states(first)
    assert _count(runner, "tweets", ids) == len(ids)
    assert _count(runner, "predictions", ids) == len(ids)  # sentiment only: emotion has no champion
    for target in REPLAY_TARGETS:
        assert stored_variable(variable_key(target)) is not None
    assert max(int(stored_variable(variable_key(t))) for t in REPLAY_TARGETS) == max(ids)
    fetched_first = [xcom(first, "inspect", map_index=i)["fetched"] for i in range(2)]
    (digest,) = mailbox.messages
    assert digest["X-Tweetpulse-Alert-Key"] == "digest:2026-03-10"
    assert "All watched sources" in mailbox.body(digest) and "&ldquo;" in mailbox.body(digest)  # quotes

    # the same tweets again (cursors reset): upserts, nothing stored twice, no second digest
    _clear_cursors(REPLAY_TARGETS)
    second = dag.test(logical_date=ANCHOR, run_conf=conf)
    assert set(states(second).values()) == {"success"}, states(second)
    again = [xcom(second, "inspect", map_index=i)["fetched"] for i in range(2)]
    assert again == fetched_first and sum(again) >= len(ids)
    assert _count(runner, "tweets", ids) == len(ids)
    assert _count(runner, "predictions", ids) == len(ids)
    assert runner.sql("SELECT count(*) FROM tweet_sources WHERE tweet_id = ANY(%s)", list(ids))[0][0] >= len(
        ids
    )
    assert len(mailbox.messages) == 1

    with runner.client() as c:
        stats = c.get("/stats/daily", params={"days": 8, "until": "2026-03-10"}).json()["rows"]
    replayed = [r for r in stats if r["found_by"] == "query:orbly -is:retweet lang:en"]
    assert replayed and all(r["mlflow_run_id"] for r in replayed)
    assert sum(r["volume"] for r in replayed) > 100


def test_a_negative_day_alerts_once_with_what_people_said(dagbag, runner, mailbox, variables):
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "replay", "max_tweets": 500, "digest": "skip"}
    dag.test(logical_date=ANCHOR, run_conf=conf)
    day = ANCHOR.replace(hour=0)
    rows = runner.sql(
        "SELECT t.tweet_id FROM tweets t JOIN tweet_sources s USING (tweet_id)"
        " WHERE s.found_by = %s AND t.created_at >= %s AND t.created_at < %s",
        REPLAY_TARGETS[0].key,
        day,
        ANCHOR,
    )
    assert len(rows) >= 20
    # plant: a newer model version reads every tweet of the day as negative
    preds = [
        {
            "tweet_id": str(r[0]),
            "label": "negative",
            "scores": {"negative": 0.8, "neutral": 0.1, "positive": 0.1},
        }
        for r in rows
    ]
    with runner.client() as c:
        body = {"task": "sentiment", "model_version": "planted-negative", "predictions": preds}
        assert c.post("/predictions", json=body).status_code == 200

    first = dag.test(logical_date=ANCHOR + timedelta(minutes=1), run_conf=conf)
    dag.test(logical_date=ANCHOR + timedelta(minutes=2), run_conf=conf)

    sent = xcom(first, "alert_negative")
    assert list(sent.values()) == ["sent"], sent
    (mail,) = mailbox.messages
    assert mail["X-Tweetpulse-Alert-Key"] == next(iter(sent))
    assert "Negative sentiment for query:orbly" in mail["Subject"]
    body = mailbox.body(mail)
    assert "negative 100.0%" in body and body.count("&ldquo;") >= 1  # shares and quoted tweets


@pytest.fixture
def x_api(monkeypatch):
    server = FakeXApi()
    monkeypatch.setenv(
        "AIRFLOW_CONN_X_API", json.dumps({"conn_type": "http", "host": server.url, "password": "test-bearer"})
    )
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": "orbly"}, {"account": "orbly"}]))
    yield server
    server.close()


SEARCH, TIMELINE = "/2/tweets/search/recent", "/2/users/1500000000000000001/tweets"


def test_x_api_through_tweepy_with_a_rate_limit_wait(dagbag, runner, mailbox, variables, x_api):
    import time

    x_api.script(
        SEARCH,
        Reply(429, recorded("too_many_requests"), {"x-rate-limit-reset": str(int(time.time()) + 1)}),
        Reply(200, recorded("search_recent_page1")),
        Reply(200, recorded("search_recent_page2")),
        Reply(200, recorded("empty")),
    )
    x_api.script("/2/users/by/username/orbly", Reply(200, recorded("user_orbly")))
    x_api.script(TIMELINE, Reply(200, recorded("users_tweets")), Reply(200, recorded("empty")))
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "x", "digest": "skip"}
    when = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)

    first = dag.test(logical_date=when, run_conf=conf)
    assert set(states(first).values()) == {"success"}, states(first)
    ids = {
        1897300000000000412,
        1897300000000000377,
        1897300000000000301,
        1897300000000000288,
        1897300000000000154,
        1897300000000000390,
        1897300000000000101,
    }
    assert _count(runner, "tweets", ids) == 7 and _count(runner, "predictions", ids) == 7
    assert stored_variable(variable_key(Target("query", "orbly"))) == "1897300000000000412"
    assert stored_variable(variable_key(Target("account", "orbly"))) == "1897300000000000390"
    assert len(x_api.calls(SEARCH)) == 3  # the 429, then two pages
    assert {s.authorization for s in x_api.seen} == {"Bearer test-bearer"}

    second = dag.test(logical_date=when + timedelta(hours=1), run_conf=conf)
    assert [xcom(second, "inspect", map_index=i)["fetched"] for i in range(2)] == [0, 0]
    assert x_api.calls(SEARCH)[-1].query["since_id"] == "1897300000000000412"
    assert x_api.calls(TIMELINE)[-1].query["since_id"] == "1897300000000000390"
    assert _count(runner, "tweets", ids) == 7


def test_a_429_without_reset_header_fails_the_target_after_one_retry(
    dagbag, runner, mailbox, variables, x_api, monkeypatch
):
    import tweetpulse_dags.sources.rate_limit as rate_limit

    monkeypatch.setattr(rate_limit, "NO_RESET_PAUSE_S", 0.2)
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": "orbly"}]))
    x_api.script(SEARCH, Reply(429, recorded("too_many_requests")))  # no x-rate-limit-reset, ever

    run = fast(dagbag.get_dag("tweet_inspector"), retries=0).test(
        logical_date=datetime(2026, 3, 11, tzinfo=UTC), run_conf={"source": "x", "digest": "skip"}
    )

    assert states(run)["inspect[0]"] == "failed" and str(run.state) == "failed"
    assert len(x_api.calls(SEARCH)) == 2
    assert stored_variable(variable_key(Target("query", "orbly"))) is None


def test_since_id_stays_when_the_commit_fails(dagbag, runner, mailbox, variables, monkeypatch, tmp_path):
    replay = tmp_path / "few.jsonl"
    replay.write_text(
        "".join(
            json.dumps(
                {
                    "id": str(7_100_000_000_000_000_000 + i),
                    "text": f"zzcommit test {i}",
                    "author": "ann",
                    "created_at": "2026-03-10T10:00:00Z",
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_REPLAY_FILE", str(replay))
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": "zzcommit"}]))
    conn = json.loads(__import__("os").environ["AIRFLOW_CONN_MODEL_RUNNER"])
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_RUNNER", json.dumps({**conn, "password": "wrong-token"}))

    run = fast(dagbag.get_dag("tweet_inspector"), retries=0).test(
        logical_date=ANCHOR, run_conf={"source": "replay", "digest": "skip"}
    )

    # with a wrong token even the reads are refused, so the run may stop before inspect maps
    assert str(run.state) == "failed"
    assert stored_variable(variable_key(Target("query", "zzcommit"))) is None
    assert runner.sql("SELECT count(*) FROM tweets WHERE text LIKE 'zzcommit%%'")[0][0] == 0


BURST_BASE = 1_910_000_000_000_000_000


def _stored_ids(runner, ids) -> set[int]:
    return {r[0] for r in runner.sql("SELECT tweet_id FROM tweets WHERE tweet_id = ANY(%s)", list(ids))}


def _assert_since_id_passes_no_unfetched_tweet(runner, target, ids) -> None:
    since = stored_variable(variable_key(target))
    if since is not None:
        below = {i for i in ids if i <= int(since)}
        assert below <= _stored_ids(runner, below), f"since_id {since} passed an unfetched tweet"


def _backlog_mails(mailbox) -> list[str]:
    keys = [m["X-Tweetpulse-Alert-Key"] for m in mailbox.messages]
    return [k for k in keys if k and k.startswith("backlog:")]


def test_a_burst_beyond_the_bound_is_stored_over_later_runs_once_each(
    dagbag, runner, mailbox, variables, x_api, monkeypatch
):
    from airflow.models import Variable

    target = Target("query", "orbly burst")
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": target.value}]))
    corpus = Corpus()
    corpus.post(range(BURST_BASE + 1, BURST_BASE + 351), when=ANCHOR - timedelta(hours=2))
    x_api.serve(SEARCH, corpus)
    Variable.set(variable_key(target), str(BURST_BASE))  # everything before the burst is stored
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "x", "max_tweets": 100, "digest": "skip"}

    fetched, stored = [], []
    for n in range(4):
        run = dag.test(logical_date=ANCHOR + timedelta(hours=n), run_conf=conf)
        assert set(states(run).values()) == {"success"}, states(run)
        fetched.append(xcom(run, "inspect", map_index=0)["fetched"])
        stored.append(len(_stored_ids(runner, corpus.tweets)))
        _assert_since_id_passes_no_unfetched_tweet(runner, target, corpus.tweets)
        if n == 0:
            assert json.loads(stored_variable(backfill_key(target)))["until_id"] == str(BURST_BASE + 251)
            assert stored_variable(variable_key(target)) == str(BURST_BASE)

    assert fetched == [100, 100, 100, 50] and stored == [100, 200, 300, 350]
    ids = list(corpus.tweets)
    assert _count(runner, "tweets", set(ids)) == 350 and _count(runner, "predictions", set(ids)) == 350
    assert runner.sql("SELECT count(*) FROM tweet_sources WHERE tweet_id = ANY(%s)", ids)[0][0] == 350
    assert stored_variable(variable_key(target)) == str(BURST_BASE + 350)
    assert stored_variable(backfill_key(target)) is None  # no backlog left
    assert _backlog_mails(mailbox) == []  # a burst that drains within backlog_alert_runs is no incident


def test_a_backlog_that_keeps_growing_alerts_once(dagbag, runner, mailbox, variables, x_api, monkeypatch):
    target = Target("query", "orbly flood")
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_WATCH", json.dumps([{"query": target.value}]))
    monkeypatch.setenv("AIRFLOW_VAR_TWEETPULSE_INSPECTOR", json.dumps({"backlog_alert_runs": 2}))
    corpus = Corpus()
    x_api.serve(SEARCH, corpus)
    dag = fast(dagbag.get_dag("tweet_inspector"))
    conf = {"source": "x", "max_tweets": 10, "digest": "skip"}

    outcomes, runs = [], []
    for n in range(3):  # 25 new tweets an hour, 10 fetched an hour
        start = BURST_BASE + 1_000 + 25 * n
        corpus.post(range(start, start + 25), when=ANCHOR + timedelta(hours=n, minutes=-30))
        run = dag.test(logical_date=ANCHOR + timedelta(hours=n), run_conf=conf)
        assert set(states(run).values()) == {"success"}, states(run)
        runs.append(xcom(run, "inspect", map_index=0)["backlog_runs"])
        outcomes.append(xcom(run, "alert_backlog"))
        _assert_since_id_passes_no_unfetched_tweet(runner, target, corpus.tweets)

    assert runs == [1, 2, 3]
    key = f"backlog:{target.slug}:start-20260310T1800"  # it began with the first run
    assert outcomes == [{}, {key: "sent"}, {key: "already_sent"}]
    assert _backlog_mails(mailbox) == [key]
    (mail,) = [m for m in mailbox.messages if m["X-Tweetpulse-Alert-Key"] == key]
    assert "Inspector backlog for query:orbly flood" in mail["Subject"]
    assert "max_tweets_per_target" in mailbox.body(mail)
