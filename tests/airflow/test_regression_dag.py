"""regression_check end to end: a planted regression and a planted collapse mail once; a healthy
registry and an empty window stay quiet; a failing run mails once per incident."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from tests.airflow.conftest import TOKEN, fast, free_port, states, stored_variable, xcom

REGISTRY, LIVE = "check.check_registry", "check.check_live_data"
QUIET_DAY = datetime(2026, 1, 10, tzinfo=UTC)  # after the DAG start date; no tweets in its window


def _champion(runner) -> str:
    with runner.client() as c:
        versions = c.get("/model/versions", params={"limit": 50}).json()["versions"]
    return next(v["version"] for v in versions if "champion" in v["aliases"])


def test_a_planted_regression_mails_once_and_a_healthy_registry_stays_quiet(
    dagbag, runner, mailbox, variables
):
    healthy = _champion(runner)
    worse = runner.fixture("train", "--shuffle")  # trained on shuffled labels
    assert worse["promoted"] is False  # the gate keeps the healthy champion
    dag = fast(dagbag.get_dag("regression_check"))

    quiet = dag.test(logical_date=QUIET_DAY)  # a newer, worse candidate that is not champion is fine
    assert xcom(quiet, "check_targets") == ["sentiment"]  # the tasks with a champion (mapped)
    assert states(quiet)["check.send_alerts[0]"] == "success", states(quiet)
    assert xcom(quiet, REGISTRY, map_index=0) == [] and xcom(quiet, LIVE, map_index=0)["incidents"] == []
    assert mailbox.messages == []

    runner.fixture("set-champion", worse["version"])  # plant the regression
    try:
        first = dag.test(logical_date=QUIET_DAY + timedelta(days=1))
        second = dag.test(logical_date=QUIET_DAY + timedelta(days=2))
    finally:
        runner.fixture("set-champion", healthy)

    (incident,) = xcom(first, REGISTRY, map_index=0)
    assert incident["key"] == f"regression:sentiment:v{worse['version']}"
    assert "macro_recall" in dict(incident["facts"])
    assert xcom(second, "check.send_alerts", map_index=0)["sent"] == {incident["key"]: "already_sent"}
    (mail,) = mailbox.messages
    assert f"v{worse['version']}" in mail["Subject"] and "macro_recall" in mailbox.body(mail)


def test_a_planted_collapse_in_live_predictions_mails_once(dagbag, runner, mailbox, variables):
    day = datetime(2026, 2, 1, tzinfo=UTC)
    tweets = [
        {
            "id": str(8_000_000_000_000_000_000 + i),
            "text": f"orbly alarm broke again, day {i}",
            "author": "ann",
            "created_at": (day - timedelta(hours=i)).isoformat(),
        }
        for i in range(1, 26)
    ]
    preds = [
        {
            "tweet_id": t["id"],
            "label": "negative",
            "scores": {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
        }
        for t in tweets
    ]
    with runner.client() as c:
        assert c.post("/tweets", json={"found_by": "query:planted", "tweets": tweets}).status_code == 200
        body = {"task": "sentiment", "model_version": "planted", "predictions": preds}
        assert c.post("/predictions", json=body).status_code == 200

    dag = fast(dagbag.get_dag("regression_check"))
    conf = {"drift_distance": 2.0}  # isolate the collapse from the (tiny, random) encoder's drift
    first = dag.test(logical_date=day, run_conf=conf)
    dag.test(logical_date=day + timedelta(hours=1), run_conf=conf)

    live = xcom(first, LIVE, map_index=0)
    assert [i["kind"] for i in live["incidents"]] == ["collapse"]
    assert live["drift"]["live_tweets"] == 25 and live["drift"]["dominant_share"] == 1.0
    (mail,) = mailbox.messages
    assert mail["X-Tweetpulse-Alert-Key"].startswith("collapse:sentiment:v")
    body = mailbox.body(mail)
    assert "negative 100.0%" in body and "orbly alarm broke again" in body  # what people said


def test_a_failing_run_mails_once_per_incident_and_a_success_closes_it(
    dagbag, runner, mailbox, variables, monkeypatch
):
    """The ModelRunner is down (nothing listens on its port): every run fails; one mail until a run
    succeeds, then the next failure mails again. The incident lives in Airflow, not the ModelRunner."""
    healthy = os.environ["AIRFLOW_CONN_MODEL_RUNNER"]
    down = {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "password": TOKEN}
    down["extra"] = {"retries": 0}  # fail fast: no client retries
    dag = fast(dagbag.get_dag("regression_check"), retries=0)
    day = datetime(2026, 4, 1, tzinfo=UTC)
    key = "tweetpulse_incident__regression_check"

    monkeypatch.setenv("AIRFLOW_CONN_MODEL_RUNNER", json.dumps(down))
    first = dag.test(logical_date=day)
    second = dag.test(logical_date=day + timedelta(days=1))
    assert (str(first.state), str(second.state)) == ("failed", "failed")
    assert states(first)["check_targets"] == "failed"
    (mail,) = mailbox.messages
    assert mail["X-Tweetpulse-Alert-Key"] == f"dag-failed:regression_check:{first.run_id}"
    assert "regression_check" in mail["Subject"] and "check_targets" in mailbox.body(mail)
    assert json.loads(stored_variable(key))["run_id"] == first.run_id

    monkeypatch.setenv("AIRFLOW_CONN_MODEL_RUNNER", healthy)
    recovered = dag.test(logical_date=day + timedelta(days=2))
    assert str(recovered.state) == "success", states(recovered)
    assert stored_variable(key) is None and len(mailbox.messages) == 1

    monkeypatch.setenv("AIRFLOW_CONN_MODEL_RUNNER", json.dumps(down))
    third = dag.test(logical_date=day + timedelta(days=3))
    assert str(third.state) == "failed"
    assert mailbox.keys() == [
        f"dag-failed:regression_check:{first.run_id}",
        f"dag-failed:regression_check:{third.run_id}",
    ]
