"""Decisions of the DAG helpers with in-memory stand-ins: retrain branching, regression and alert rules,
the cursor commit point and the alert ledger protocol."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from tweetpulse_dags import config, inspector, inspector_alerts, regression, retrain
from tweetpulse_dags.alerting import Alert, AlertInFlight, AlertSender
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


def test_poke_until_the_job_ends_or_times_out():
    job = {"job_id": "j", "started_at": time.time()}
    assert retrain.poke(JobRunner("running"), job, 10) == (False, None)
    assert retrain.poke(JobRunner("failed"), job, 10) == (True, {"state": "failed"})
    done, state = retrain.poke(JobRunner("running"), {**job, "started_at": time.time() - 120}, 1)
    assert done and state["state"] == "timed_out"


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
    assert alert.key == "training-failed:run-1"
    assert (
        "j-1" in alert.subject and "DataError: &lt;no rows&gt;" in alert.html and "http://m/r/1" in alert.html
    )
    assert retrain.failure_alert({"outcome": "not_started"}, "manual__1").key == "training-failed:manual__1"


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
