"""Decisions of the DAG helpers with in-memory stand-ins: retrain branching, regression and alert rules,
the cursor commit point and the alert ledger protocol."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from tweetpulse_dags import config, inspector, inspector_alerts, regression, retrain
from tweetpulse_dags.alerting import Alert, AlertInFlight, AlertSender
from tweetpulse_dags.runner_client import JobConflict, RunnerError
from tweetpulse_dags.sources.base import Deadline, FetchedTweet

from tests.airflow.fakes import FakeInspectRunner, FakeLedgerRunner, FakeMailer, FakeSource, MemoryCursors

TH = dict(config.DEFAULT_THRESHOLDS)
ALERT = Alert("training-failed:job-1", "training", "subject", "<p>x</p>", "summary")


# --- alert ledger protocol ------------------------------------------------------------------------
def test_an_alert_is_mailed_once_across_retries():
    ledger, mailer = FakeLedgerRunner(), FakeMailer()
    sender = AlertSender(ledger, mailer, ["a@x"])
    assert sender.send_once(ALERT) == "sent"
    assert sender.send_once(ALERT) == "already_sent"
    assert len(mailer.sent) == 1
    assert mailer.sent[0][2]["X-Tweetpulse-Alert-Key"] == ALERT.key
    assert mailer.sent[0][2]["Message-ID"].endswith("@tweetpulse.alerts>")


def test_a_failed_send_releases_the_claim_so_the_retry_mails():
    ledger = FakeLedgerRunner()
    with pytest.raises(ConnectionRefusedError):
        AlertSender(ledger, FakeMailer(fail=True), ["a@x"]).send_once(ALERT)
    mailer = FakeMailer()
    assert AlertSender(ledger, mailer, ["a@x"]).send_once(ALERT) == "sent"
    assert len(mailer.sent) == 1


def test_a_claim_in_flight_makes_the_task_retry_later():
    ledger = FakeLedgerRunner()
    ledger.claim_alert(ALERT.key, "training", "", 90)  # another attempt holds it
    with pytest.raises(AlertInFlight):
        AlertSender(ledger, FakeMailer(), ["a@x"]).send_once(ALERT)


def test_an_unreachable_ledger_still_mails():
    mailer = FakeMailer()
    assert (
        AlertSender(FakeLedgerRunner(unreachable=True), mailer, ["a@x"]).send_once(ALERT)
        == "sent_without_ledger"
    )
    assert len(mailer.sent) == 1


# --- inspector commit point -----------------------------------------------------------------------
TWEETS = [FetchedTweet(i, f"tweet {i}", "ann", datetime(2026, 3, 1, tzinfo=UTC)) for i in (11, 12, 13)]
SETTINGS = {"max_tweets_per_target": 100, "inference_batch": 2}


def _inspect(runner, cursors):
    return inspector.inspect_target(
        {"kind": "query", "value": "acme"},
        runner=runner,
        source=FakeSource(TWEETS),
        cursors=cursors,
        tasks=["sentiment", "emotion"],
        settings=SETTINGS,
        deadline=Deadline(60),
    )


@pytest.mark.parametrize("failing", ["store_tweets", "classify", "store_predictions"])
def test_since_id_does_not_advance_when_a_write_fails(failing):
    cursors = MemoryCursors({"query:acme": 10})
    with pytest.raises(Exception, match="database went away"):
        _inspect(FakeInspectRunner(fail_on=failing), cursors)
    assert cursors.values == {"query:acme": 10}


def test_since_id_advances_after_every_write_and_a_rerun_fetches_nothing():
    cursors, runner = MemoryCursors(), FakeInspectRunner()
    report = _inspect(runner, cursors)
    assert cursors.values == {"query:acme": 13}
    assert report["fetched"] == 3 and report["predictions"]["emotion"]["inserted"] == 3
    assert runner.calls.count("classify") == 4  # 2 tasks x 2 batches of at most 2
    again = _inspect(FakeInspectRunner(), cursors)
    assert again["fetched"] == 0 and again["since_id_after"] == "13"


# --- weekly retrain -------------------------------------------------------------------------------
class JobRunner:
    def __init__(self, *states):
        self.states, self.cancelled = list(states), False

    def training_job(self, job_id):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {
            "job_id": job_id,
            "state": state,
            "progress": 0.5,
            "stage": "cv",
            "error": "boom" if state == "failed" else None,
        }

    def cancel_training(self, job_id):
        self.cancelled = True
        return {"job_id": job_id, "state": "running", "progress": 0.5}


def _run_trigger(monkeypatch, views, **kwargs) -> tuple[dict, list[str]]:
    """Run TrainingJobTrigger against canned GET /train/{id} answers; returns its one event."""
    import asyncio

    import httpx
    from tweetpulse_dags import triggers
    from tweetpulse_dags.runner_client import RunnerConfig

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers.get('authorization')}")
        status, body = views.pop(0) if len(views) > 1 else views[0]
        if isinstance(body, Exception):
            raise body
        return httpx.Response(status, json=body)

    config = RunnerConfig("http://runner.test", token="t0k")

    async def fake_config(conn_id):
        assert conn_id == "model_runner"
        return config

    monkeypatch.setattr(triggers, "aconfig_from_connection", fake_config)
    original = triggers.http_client
    monkeypatch.setattr(
        triggers,
        "http_client",
        lambda cfg: httpx.AsyncClient(
            base_url=cfg.base_url, headers=original(cfg).headers, transport=httpx.MockTransport(answer)
        ),
    )
    trigger = triggers.TrainingJobTrigger(
        **{"job_id": "j", "deadline": time.time() + 60, "poll_s": 0, **kwargs}
    )

    async def first_event():
        events = [event async for event in trigger.run()]
        assert len(events) == 1  # one event, then the generator ends
        return events[0].payload

    return asyncio.run(first_event()), seen


def _view(state, **extra):
    return 200, {"job_id": "j", "state": state, "progress": 0.5, "stage": "cv", **extra}


def test_the_trigger_polls_until_the_job_ends_and_settles(monkeypatch):
    views = [
        _view("queued"),
        _view("running"),
        _view("succeeded", settled=False, finished_at=datetime.now(UTC).isoformat()),
    ]
    views.append(_view("succeeded", settled=True))
    event, seen = _run_trigger(monkeypatch, views)
    assert event == {"status": "done", "job_id": "j", "state": "succeeded", "polls": 4}
    assert seen[0] == "GET /train/j Bearer t0k"


def test_the_trigger_rides_out_outages_and_fires_on_timeout(monkeypatch):
    import httpx

    down = (503, {"error": {"type": "unavailable", "message": "db away"}})
    refused = (None, httpx.ConnectError("refused"))
    views = [down, refused, _view("running"), _view("running")]
    event, _ = _run_trigger(monkeypatch, views, deadline=time.time() + 0.3, poll_s=0.05)
    assert event["status"] == "timed_out" and event["state"] == "running" and event["polls"] >= 4


def test_the_trigger_reports_a_refusal_and_a_long_outage(monkeypatch):
    import httpx

    unknown = (404, {"error": {"type": "not_found", "message": "no job j"}})
    event, _ = _run_trigger(monkeypatch, [unknown])
    assert event["status"] == "error" and "no job j" in event["error"] and event["polls"] == 1
    event, _ = _run_trigger(
        monkeypatch, [(None, httpx.ConnectError("refused"))], unreachable_s=0.1, poll_s=0.05
    )
    assert event["status"] == "error" and "unreachable" in event["error"]


def test_the_resumed_wait_hands_on_the_state_or_fails():
    assert retrain.wait_outcome({"status": "done", "job_id": "j", "state": "failed", "polls": 3}) == {
        "state": "failed",
        "polls": 3,
    }
    timed_out = retrain.wait_outcome({"status": "timed_out", "job_id": "j", "state": "running", "polls": 9})
    assert timed_out["state"] == "timed_out" and timed_out["job_state"] == "running"
    with pytest.raises(RunnerError, match="no job j"):
        retrain.wait_outcome(
            {"status": "error", "job_id": "j", "state": None, "polls": 1, "error": "no job j"}
        )


class BusyRunner:
    """POST /train answers 409 naming the running job, which trains ``running_task``."""

    def __init__(self, running_task):
        self.running_task = running_task

    def start_training(self, body):
        raise JobConflict(409, "conflict", "a job is running", {"error": {"job_id": "other"}})

    def training_job(self, job_id):
        return {"job_id": job_id, "state": "running", "task": self.running_task}


def test_a_start_follows_its_own_tasks_job_and_waits_behind_another_tasks_job():
    mine = retrain.start(BusyRunner("sentiment"), {"task": "sentiment"})
    assert mine["job_id"] == "other" and mine["adopted"] is True
    blocked = retrain.start(BusyRunner("sentiment"), {"task": "emotion"})
    assert blocked["job_id"] is None and blocked["blocked_by"] == "other"
    assert blocked["blocked_task"] == "sentiment"
    assert retrain.decide(JobRunner("x"), blocked, 5)[1]["outcome"] == "not_started"


class TasksRunner:
    def __init__(self, tasks, champions):
        self.tasks, self.champions = tasks, champions

    def declared_tasks(self):
        return self.tasks

    def champion_version(self, task):
        return self.champions.get(task)


def test_retrain_and_check_targets_are_the_tasks_with_a_champion():
    declared = [
        {"name": "sentiment", "schedule": "@weekly", "served": True},
        {"name": "emotion", "schedule": "", "served": True},
        {"name": "stance", "schedule": "", "served": True},
        {"name": "topic", "schedule": "0 3 * * 1", "served": False},
    ]
    runner = TasksRunner(declared, {"emotion": "4"})
    # sentiment and topic have no champion yet, but a schedule: their first training makes one
    assert retrain.targets(runner) == ["sentiment", "emotion", "topic"]
    assert regression.targets(runner) == ["emotion"]
    assert regression.targets(TasksRunner(declared, {"sentiment": "2", "emotion": "4"})) == [
        "sentiment",
        "emotion",
    ]


def test_branching_on_the_outcome():
    assert retrain.decide(JobRunner("succeeded"), {"job_id": "j"}, 5)[0] == "report_success"
    branch, outcome = retrain.decide(JobRunner("failed"), {"job_id": "j"}, 5)
    assert (branch, outcome["outcome"], outcome["error"]) == ("alert_failure", "failed", "boom")
    still = JobRunner("running")
    branch, outcome = retrain.decide(still, {"job_id": "j"}, 5)
    assert branch == "alert_failure" and outcome["outcome"] == "timed_out" and still.cancelled
    assert retrain.decide(JobRunner("x"), None, 5)[1]["outcome"] == "not_started"


def test_the_failure_mail_names_job_error_and_mlflow_run():
    alert = retrain.failure_alert(
        {
            "job_id": "j-1",
            "outcome": "failed",
            "error": "DataError: <no rows>",
            "mlflow_run_url": "http://m/r/1",
        },
        "run-1",
    )
    assert alert.key == "training-failed:run-1:sentiment"
    assert (
        "j-1" in alert.subject and "DataError: &lt;no rows&gt;" in alert.html and "http://m/r/1" in alert.html
    )
    not_started = retrain.failure_alert({"outcome": "not_started"}, "manual__1", task="emotion")
    assert not_started.key == "training-failed:manual__1:emotion" and "emotion" in not_started.subject


def test_training_request_drops_unset_params():
    body = retrain.training_request(
        {"task": "sentiment", "dataset": None, "adapters": ["linear"], "folds": None}
    )
    assert body == {"task": "sentiment", "adapters": ["linear"], "include_feedback": True}
    body = retrain.training_request(
        {
            "task": None,
            "label_map": {"0": "negative", "4": "positive"},
            "text_column": "tweet",
            "label_column": None,
        }
    )
    assert body == {
        "label_map": {"0": "negative", "4": "positive"},
        "text_column": "tweet",
        "include_feedback": True,
    }


# --- regression rules -----------------------------------------------------------------------------
def _version(v, macro, neg, aliases=()):
    return {
        "version": str(v),
        "aliases": list(aliases),
        "metrics": {"macro_recall": macro, "recall_negative": neg},
    }


def test_a_champion_below_its_predecessors_is_one_incident():
    versions = [_version(3, 0.60, 0.40, ["champion"]), _version(2, 0.70, 0.70), _version(1, 0.66, 0.60)]
    (incident,) = regression.registry_incidents("sentiment", versions, TH)
    assert incident.key == "regression:sentiment:v3"
    assert [name for name, _ in incident.facts] == ["macro_recall", "recall_negative"]


def test_small_drops_and_newer_unpromoted_versions_stay_quiet():
    versions = [_version(4, 0.30, 0.10), _version(3, 0.68, 0.65, ["champion"]), _version(2, 0.70, 0.70)]
    assert regression.registry_incidents("sentiment", versions, TH) == []
    assert regression.registry_incidents("sentiment", [_version(1, 0.5, 0.5, ["champion"])], TH) == []


def test_live_data_incidents_and_resolutions():
    drift = {
        "live_tweets": 50,
        "centroid_distance": 0.5,
        "dominant_label": "negative",
        "dominant_share": 0.95,
        "live_shares": {"negative": 0.95, "positive": 0.05},
        "reference_shares": {"negative": 0.3, "positive": 0.7},
        "reference_embedded": 100,
        "window": {"since": "2026-03-01T00:00:00", "until": "2026-03-08T00:00:00"},
    }
    incidents, clear = regression.live_incidents("sentiment", drift, "3", TH)
    assert [i.key for i in incidents] == ["drift:sentiment:v3", "collapse:sentiment:v3"] and clear == []
    healthy = {**drift, "centroid_distance": 0.01, "dominant_share": 0.5}
    assert regression.live_incidents("sentiment", healthy, "3", TH) == (
        [],
        ["drift:sentiment:v3", "collapse:sentiment:v3"],
    )
    assert regression.live_incidents("sentiment", {**drift, "live_tweets": 3}, "3", TH) == ([], [])


# --- negative sentiment rules ---------------------------------------------------------------------
def _row(day, volume, negative, source="query:acme"):
    return {
        "found_by": source,
        "day": day,
        "volume": volume,
        "counts": {"negative": negative},
        "shares": {"negative": negative / volume, "positive": 1 - negative / volume},
    }


def test_negative_share_and_jump_against_the_baseline():
    anchor = datetime(2026, 3, 10, 15, tzinfo=UTC)
    rows = [_row("2026-03-08", 100, 10), _row("2026-03-09", 100, 10), _row("2026-03-10", 40, 16)]
    (incident,) = inspector_alerts.negative_incidents(rows, anchor, TH)
    assert incident["key"].startswith("negative:query_acme_") and incident["key"].endswith(":2026-03-10")
    assert incident["baseline"] == pytest.approx(0.1) and "baseline" in incident["reasons"][0]
    calm = [_row("2026-03-09", 100, 30), _row("2026-03-10", 40, 14)]
    assert inspector_alerts.negative_incidents(calm, anchor, TH) == []
    tiny = [_row("2026-03-10", 5, 5)]
    assert inspector_alerts.negative_incidents(tiny, anchor, TH) == []  # below min_volume


def test_digest_schedule():
    morning, evening = datetime(2026, 3, 10, 6, tzinfo=UTC), datetime(2026, 3, 10, 19, tzinfo=UTC)
    assert not inspector_alerts.digest_due("auto", morning, 7)
    assert inspector_alerts.digest_due("auto", evening, 7)
    assert inspector_alerts.digest_due("now", morning, 7) and not inspector_alerts.digest_due(
        "skip", evening, 7
    )


def test_settings_layers_and_unknown_keys():
    merged = config.merge_settings({"a": 1, "b": 2}, {"a": 5}, {"b": None, "a": 9})
    assert merged == {"a": 9, "b": 2}
    with pytest.raises(ValueError, match="unknown Variable settings"):
        config.merge_settings({"a": 1}, {"typo": 1}, None)
