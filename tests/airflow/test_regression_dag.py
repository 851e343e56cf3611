"""regression_check end to end: a planted regression and a planted collapse mail once; a healthy
registry and an empty window stay quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.airflow.conftest import fast, states, xcom

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
    assert states(quiet)["send_alerts"] == "success", states(quiet)
    assert xcom(quiet, "check_registry") == [] and xcom(quiet, "check_live_data")["incidents"] == []
    assert mailbox.messages == []

    runner.fixture("set-champion", worse["version"])  # plant the regression
    try:
        first = dag.test(logical_date=QUIET_DAY + timedelta(days=1))
        second = dag.test(logical_date=QUIET_DAY + timedelta(days=2))
    finally:
        runner.fixture("set-champion", healthy)

    (incident,) = xcom(first, "check_registry")
    assert incident["key"] == f"regression:sentiment:v{worse['version']}"
    assert "macro_recall" in dict(incident["facts"])
    assert xcom(second, "send_alerts")["sent"] == {incident["key"]: "already_sent"}
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

    live = xcom(first, "check_live_data")
    assert [i["kind"] for i in live["incidents"]] == ["collapse"]
    assert live["drift"]["live_tweets"] == 25 and live["drift"]["dominant_share"] == 1.0
    (mail,) = mailbox.messages
    assert mail["X-Tweetpulse-Alert-Key"].startswith("collapse:sentiment:v")
    body = mailbox.body(mail)
    assert "negative 100.0%" in body and "orbly alarm broke again" in body  # what people said
