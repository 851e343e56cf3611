"""Nothing lost in a burst: the backfill cursor, with tweepy against the fake X API at the HTTP boundary.

A bounded run stores the newest tweets and leaves the older rest as a window ``(since_id, until_id)``
that later runs drain; ``since_id`` never passes an unfetched tweet, and every tweet is stored once.
These are the fast cases (an in-memory cursor store and ModelRunner); test_tweet_inspector_dag.py runs
the same through Airflow and the real ModelRunner.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from tweetpulse_dags import inspector, inspector_alerts
from tweetpulse_dags.alerting import AlertSender
from tweetpulse_dags.cursors import Backfill
from tweetpulse_dags.runner_api import Classified
from tweetpulse_dags.sources.base import Deadline, Target
from tweetpulse_dags.sources.replay import ReplaySource
from tweetpulse_dags.sources.x_api import XApiSource, build_client

from tests.airflow.fake_x_api import Corpus, FakeXApi, Reply, recorded
from tests.airflow.fakes import FakeLedgerRunner, FakeMailer

SEARCH, USER, TIMELINE = (
    "/2/tweets/search/recent",
    "/2/users/by/username/orbly",
    "/2/users/1500000000000000001/tweets",
)
QUERY, ACCOUNT = Target("query", "orbly"), Target("account", "orbly")
BASE = 1_900_000_000_000_000_000
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@dataclass
class MemoryStore:
    """The cursor store of VariableCursors, in memory; ``fail_on`` simulates a crash at that write."""

    since: dict[str, int] = field(default_factory=dict)
    backfill: dict[str, Backfill] = field(default_factory=dict)
    fail_on: str | None = None

    def get(self, target):
        return self.since.get(target.key)

    def set(self, target, since_id):
        if self.fail_on == "set":
            raise ConnectionError("metadata database went away")
        self.since[target.key] = since_id

    def get_backfill(self, target):
        return self.backfill.get(target.key)

    def set_backfill(self, target, backfill):
        if self.fail_on == "set_backfill":
            raise ConnectionError("metadata database went away")
        if backfill is None:
            self.backfill.pop(target.key, None)
        else:
            self.backfill[target.key] = backfill


@dataclass
class RecordingRunner:
    """Upserts by tweet id, as the ModelRunner does; counts how often each id was written."""

    stored: set[int] = field(default_factory=set)
    writes: Counter = field(default_factory=Counter)

    def store_tweets(self, found_by, tweets):
        ids = [int(t["id"]) for t in tweets]
        self.writes.update(ids)
        new = set(ids) - self.stored
        self.stored |= new
        return {"inserted": len(new)}

    def classify(self, texts, task):
        return Classified("1", [{"label": "neutral", "scores": {"neutral": 1.0}} for _ in texts])

    def store_predictions(self, task, version, preds):
        return {"inserted": len(preds), "queued_for_review": 0}


@pytest.fixture
def x_api():
    server = FakeXApi()
    yield server
    server.close()


def _run(source, store, runner, limit, target=QUERY, run_id=None):
    return inspector.inspect_target(
        {"kind": target.kind, "value": target.value},
        runner=runner,
        source=source,
        cursors=store,
        tasks=["sentiment"],
        settings={"max_tweets_per_target": limit, "inference_batch": 64},
        deadline=Deadline(60),
        run_id=run_id,
        now=NOW,
    )


def _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus_ids, target=QUERY):
    since = store.get(target)
    if since is not None:
        assert {i for i in corpus_ids if i <= since} <= runner.stored


def test_a_burst_of_350_is_stored_over_4_runs_once_each(x_api):
    corpus = Corpus()
    corpus.post(range(BASE + 1, BASE + 6))  # already stored before the burst
    x_api.serve(SEARCH, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store, runner = MemoryStore(), RecordingRunner()
    assert _run(source, store, runner, 100)["fetched"] == 5 and store.get(QUERY) == BASE + 5
    burst = range(BASE + 6, BASE + 356)
    corpus.post(burst)

    fetched, sinces = [], []
    for n in range(4):
        report = _run(source, store, runner, 100, run_id=f"run-{n}")
        fetched.append(report["fetched"])
        sinces.append(store.get(QUERY))
        _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus.tweets)
    assert fetched == [100, 100, 100, 50]
    assert runner.stored == set(corpus.tweets) and set(runner.writes.values()) == {1}  # all, once each
    assert sinces == [BASE + 5, BASE + 5, BASE + 5, BASE + 355]  # only moves once the window drained
    assert store.get_backfill(QUERY) is None
    windows = [c.query["until_id"] for c in x_api.calls(SEARCH) if "until_id" in c.query]
    assert windows == [str(BASE + 256), str(BASE + 156), str(BASE + 56)]  # shrinks from above
    assert _run(source, store, runner, 100)["fetched"] == 0


def test_tweets_arriving_during_the_drain_and_a_small_bound_lose_nothing(x_api):
    """Random arrivals between runs, bounds smaller than the API's minimum page: the invariant holds
    after every run, and once arrivals stop every tweet is stored exactly once."""
    rng = random.Random(7)
    corpus = Corpus()
    x_api.serve(SEARCH, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store, runner = MemoryStore(), RecordingRunner()
    next_id = BASE + 1
    for n in range(40):
        arrivals = rng.choice([0, 0, 3, 9, 25, 60])
        corpus.post(range(next_id, next_id + arrivals))
        next_id += arrivals + rng.choice([0, 1, 1000])  # ids are sparse, like real snowflakes
        _run(source, store, runner, rng.choice([7, 10, 30]), run_id=f"run-{n}")
        _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus.tweets)
    for n in range(100):
        if runner.stored == set(corpus.tweets):
            break
        _run(source, store, runner, 30, run_id=f"drain-{n}")
    assert runner.stored == set(corpus.tweets) and set(runner.writes.values()) == {1}
    assert store.get(QUERY) == max(corpus.tweets) and store.get_backfill(QUERY) is None


@pytest.mark.parametrize("crash_at", ["set_backfill", "set"])
def test_a_crash_at_the_commit_refetches_and_loses_nothing(x_api, crash_at):
    corpus = Corpus()
    corpus.post(range(BASE + 1, BASE + 251))
    x_api.serve(SEARCH, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store, runner = MemoryStore(), RecordingRunner()
    _run(source, store, runner, 100, run_id="a")  # newest 100 stored, window below them
    store.fail_on = crash_at
    crashed = 0
    for n in range(3):  # "set_backfill" crashes at once, "set" when the drained window moves since_id
        try:
            _run(source, store, runner, 100, run_id=f"b{n}")
        except ConnectionError:
            crashed += 1
            break
        _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus.tweets)
    assert crashed == 1
    _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus.tweets)
    store.fail_on = None
    for n in range(4):
        _run(source, store, runner, 100, run_id=f"b-retry-{n}")
        _assert_since_id_passes_no_unfetched_tweet(store, runner, corpus.tweets)
    assert runner.stored == set(corpus.tweets)
    assert max(runner.writes.values()) <= 2  # a crashed attempt's tweets are refetched (upserted) once


def test_a_rerun_of_the_same_run_does_not_count_twice(x_api):
    corpus = Corpus()
    corpus.post(range(BASE + 1, BASE + 501))
    x_api.serve(SEARCH, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store, runner = MemoryStore(), RecordingRunner()
    assert _run(source, store, runner, 100, run_id="r1")["backlog_runs"] == 1
    assert _run(source, store, runner, 100, run_id="r1")["backlog_runs"] == 1  # the retry of r1
    report = _run(source, store, runner, 100, run_id="r2")
    assert report["backlog_runs"] == 2 and store.get_backfill(QUERY).fetched == 300
    assert store.get_backfill(QUERY).episode == "start-20260310T1200" and store.get(QUERY) is None


def test_an_account_timeline_backfills_with_until_id(x_api):
    x_api.script(USER, Reply(200, recorded("user_orbly")))
    corpus = Corpus(min_page=5, author_id="1500000000000000001", username="orbly")
    corpus.post(range(BASE + 1, BASE + 24))
    x_api.serve(TIMELINE, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store, runner = MemoryStore(), RecordingRunner()
    fetched = [_run(source, store, runner, 6, target=ACCOUNT)["fetched"] for _ in range(5)]
    assert fetched == [6, 6, 6, 5, 0] and runner.stored == set(corpus.tweets)
    assert {c.query["max_results"] for c in x_api.calls(TIMELINE)} <= {"5", "6"}
    assert any("until_id" in c.query for c in x_api.calls(TIMELINE))


def test_the_replay_walks_forward_without_a_window(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        "".join(
            f'{{"id": "{i}", "text": "orbly {i}", "author": "ann", "created_at": "2026-03-10T10:00:00Z"}}\n'
            for i in range(1, 26)
        )
    )
    source = ReplaySource(path, anchor=NOW)
    store, runner = MemoryStore(), RecordingRunner()
    fetched = []
    for _ in range(4):
        fetched.append(_run(source, store, runner, 10)["fetched"])
        _assert_since_id_passes_no_unfetched_tweet(store, runner, range(1, 26))
        assert store.get_backfill(QUERY) is None or not store.get_backfill(QUERY).window_open
    assert fetched == [10, 10, 5, 0] and runner.stored == set(range(1, 26))
    assert store.get_backfill(QUERY) is None  # the backlog ended with the run that read the rest


def test_a_window_below_a_hand_moved_since_id_is_dropped(x_api):
    corpus = Corpus()
    corpus.post(range(BASE + 1, BASE + 21))
    x_api.serve(SEARCH, corpus)
    source = XApiSource(build_client("t", base_url=x_api.url))
    store = MemoryStore({QUERY.key: BASE + 15}, {QUERY.key: Backfill(BASE + 10, BASE + 12, runs=3)})
    runner = RecordingRunner()
    report = _run(source, store, runner, 100)
    assert runner.stored == set(range(BASE + 16, BASE + 21)) and report["backfill_window"] is None
    assert store.get(QUERY) == BASE + 20 and store.get_backfill(QUERY) is None


def test_the_backlog_alert_goes_out_once_per_backlog():
    store = MemoryStore()
    targets = [{"kind": "query", "value": "orbly"}, {"kind": "account", "value": "orbly"}]
    ledger, mailer = FakeLedgerRunner(), FakeMailer()
    sender = AlertSender(ledger, mailer, ["ops@x"])

    def alert(backfill):
        store.backfill[QUERY.key] = backfill
        incidents = inspector_alerts.backlog_incidents(targets, store, 3)
        return inspector_alerts.send_backlog_alerts(sender, incidents, 100)

    assert alert(Backfill(BASE + 9, BASE + 99, runs=2, started="2026-03-10T09:00", episode="5")) == {}
    key = f"backlog:{QUERY.slug}:5"
    assert alert(Backfill(BASE + 9, BASE + 99, runs=3, started="2026-03-10T09:00", episode="5")) == {
        key: "sent"
    }
    assert alert(Backfill(BASE + 8, BASE + 99, runs=4, started="2026-03-10T09:00", episode="5")) == {
        key: "already_sent"
    }
    (sent,) = mailer.sent
    assert "Inspector backlog for query:orbly: 3 runs behind" in sent[1]
    assert sent[2]["X-Tweetpulse-Alert-Key"] == key
    # a later backlog (it began at another since_id) is a new incident
    assert alert(Backfill(None, None, runs=3, started="2026-03-11T09:00", episode="777")) == {
        f"backlog:{QUERY.slug}:777": "sent"
    }
    assert inspector_alerts.backlog_incidents(targets, store, 0) == []  # 0 turns the alert off


def test_backfill_round_trips_through_json():
    backfill = Backfill(BASE + 1, BASE + 2, 3, "2026-03-10T12:00:00+00:00", "42", 300, "run-1")
    raw = backfill.to_json()
    assert f'"{BASE + 1}"' in raw  # ids as strings
    assert Backfill.from_json(raw) == backfill
    assert Backfill.from_json('{"runs": 1}') == Backfill(runs=1)
