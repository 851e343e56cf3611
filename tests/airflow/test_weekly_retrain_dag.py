"""weekly_retrain end to end: dag.test() against the real ModelRunner, mail into the SMTP sink. The wait
really defers: dag.test() runs the trigger in line, and the tests watch the task hand it over."""

from __future__ import annotations

import time

import pytest
from tweetpulse_dags import retrain
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import RunnerConfig

from tests.airflow.conftest import TOKEN, fast, states, xcom

WAIT, START = "retrain.wait_for_training", "retrain.start_training"


@pytest.fixture
def deferrals(monkeypatch, runner):
    """Every task run that ended DEFERRED, with the job's state at that moment, and every trigger event."""
    import airflow.sdk.definitions.dag as sdk_dag
    import airflow.sdk.execution_time.supervisor as supervisor

    seen: dict[str, list] = {"deferred": [], "events": []}
    real_run, real_trigger = supervisor.run_task_in_process, sdk_dag._run_inline_trigger

    def run_task_in_process(ti, task):
        result = real_run(ti=ti, task=task)
        if getattr(result.ti.state, "value", result.ti.state) == "deferred":
            job_id = (
                result.msg.trigger_kwargs.get("job_id")
                if isinstance(result.msg.trigger_kwargs, dict)
                else None
            )
            with runner.client() as c:
                job_state = c.get(f"/train/{job_id}").json()["state"] if job_id else None
            seen["deferred"].append(
                {
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "classpath": result.msg.classpath,
                    "next_method": result.msg.next_method,
                    "job_id": job_id,
                    "job_state": job_state,
                }
            )
        return result

    def run_inline_trigger(trigger, task_sdk_ti):
        event = real_trigger(trigger, task_sdk_ti)
        seen["events"].append(event.payload)
        return event

    monkeypatch.setattr(supervisor, "run_task_in_process", run_task_in_process)
    monkeypatch.setattr(sdk_dag, "_run_inline_trigger", run_inline_trigger)
    return seen


def _champion(runner) -> str:
    with runner.client() as c:
        versions = c.get("/model/versions", params={"limit": 50}).json()["versions"]
    return next(v["version"] for v in versions if "champion" in v["aliases"])


def test_a_scheduled_retrain_waits_in_the_triggerer_and_a_promotion_emits_the_champion_asset(
    dagbag, runner, mailbox, variables, deferrals
):
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session

    # a worse champion (shuffled labels), so this retrain surely beats it and is promoted
    worse = runner.fixture("train", "--shuffle")
    runner.fixture("set-champion", worse["version"])
    dag = fast(dagbag.get_dag("weekly_retrain"))
    run = dag.test(run_conf={"dataset": str(runner.home / "data"), "adapters": ["linear"], "folds": 2})

    # task "all" (the schedule's default): the tasks with a champion or a schedule; here sentiment only
    assert xcom(run, "retrain_targets") == ["sentiment"]
    assert states(run)[f"{WAIT}[0]"] == "success", states(run)
    # the wait handed the job to the trigger while the job was still training, and resumed on its event
    (deferred,) = deferrals["deferred"]
    job_id = xcom(run, START, map_index=0)["job_id"]
    assert deferred == {
        "task_id": WAIT,
        "map_index": 0,
        "classpath": "tweetpulse_dags.triggers.TrainingJobTrigger",
        "next_method": "execute_complete",
        "job_id": job_id,
        "job_state": deferred["job_state"],
    }
    assert deferred["job_state"] in ("queued", "running")
    (event,) = deferrals["events"]
    assert event["status"] == "done" and event["state"] == "succeeded" and event["polls"] >= 2
    assert xcom(run, WAIT, map_index=0)["state"] == "succeeded"

    assert states(run)["retrain.report_success[0]"] == "success", states(run)
    assert states(run)["retrain.alert_failure[0]"] == "skipped"
    summary = xcom(run, "retrain.report_success", map_index=0)
    assert summary["promoted"] is True and summary["served_version"] == summary["model_version"]
    assert 0 <= summary["metrics"]["macro_recall"] <= 1
    assert summary["mlflow_run_url"].startswith("http://mlflow.test:5000/#/experiments/")
    assert mailbox.messages == []

    # the promotion updated the champion Asset, and that queued a regression_check run
    assert states(run)["retrain.publish_champion[0]"] == "success"
    with create_session() as session:
        asset = session.query(AssetModel).filter_by(name="tweetpulse_champion").one()
        events = session.query(AssetEvent).filter_by(asset_id=asset.id, source_run_id=run.run_id).all()
        queued = session.query(AssetDagRunQueue).filter_by(asset_id=asset.id).all()
    assert [e.extra for e in events] == [
        {"task": "sentiment", "version": summary["model_version"], "job_id": summary["job_id"]}
    ]
    assert events[0].source_task_id == "retrain.publish_champion"
    assert [q.target_dag_id for q in queued] == ["regression_check"]
    assert _champion(runner) == summary["model_version"]


def test_only_a_promotion_updates_the_champion_asset(dagbag):
    from airflow.sdk.exceptions import AirflowSkipException
    from tweetpulse_dags.assets import CHAMPION

    publish = dagbag.get_dag("weekly_retrain").get_task("retrain.publish_champion")
    assert [o.name for o in publish.outlets] == [CHAMPION.name]

    from types import SimpleNamespace

    events = {CHAMPION: SimpleNamespace(extra={})}
    kept = {"task": "sentiment", "model_version": "5", "job_id": "j", "promoted": False}
    with pytest.raises(AirflowSkipException):  # a skipped task emits no asset event
        publish.python_callable(kept, outlet_events=events)
    assert events[CHAMPION].extra == {}
    promoted = publish.python_callable({**kept, "promoted": True}, outlet_events=events)
    assert events[CHAMPION].extra == promoted == {"task": "sentiment", "version": "5", "job_id": "j"}


def test_a_failed_job_sends_exactly_one_mail(dagbag, runner, mailbox, variables, deferrals):
    dag = fast(dagbag.get_dag("weekly_retrain"))
    run = dag.test(run_conf={"task": "sentiment", "dataset": str(runner.home / "bad" / "train.jsonl")})

    assert xcom(run, "retrain_targets") == ["sentiment"]  # a task named: just that one
    assert states(run)["retrain.alert_failure[0]"] == "success"
    assert states(run)["retrain.report_success[0]"] == "skipped"
    assert [d["task_id"] for d in deferrals["deferred"]] == [WAIT]
    outcome = xcom(run, "retrain.choose_outcome", key="outcome", map_index=0)
    assert outcome["state"] == "failed" and outcome["error"]
    (mail,) = mailbox.messages
    body = mailbox.body(mail)
    assert outcome["job_id"] in mail["Subject"] and outcome["job_id"] in body
    assert mail["X-Tweetpulse-Alert-Key"] == f"training-failed:{run.run_id}:sentiment"
    assert "MLflow run" in body and outcome["error"].split(":")[0] in body
    # the mail says what is served, as the ModelRunner found it after the job
    assert outcome["settled"] is True and outcome["promoted"] is False
    assert "Served version" in body and "did not replace" in body
    if outcome["served_version"]:
        assert f"version {outcome['served_version']}" in body
    # the run itself succeeded (its alert went out): the DAG's incident mail stays quiet
    assert str(run.state) == "success"

    # the alert task retried (or re-run) for the same job mails nothing more
    with ModelRunner(RunnerConfig(runner.url, token=TOKEN)) as client:
        sender = AlertSender(client, SmtpMailer(), ["mlops@example.com"])
        alert = retrain.failure_alert(outcome, run.run_id, task="sentiment")
        assert sender.send_once(alert) == "already_sent"
    assert len(mailbox.messages) == 1


def test_the_failure_mail_says_when_the_job_promoted_before_it_failed():
    outcome = {
        "job_id": "j-2",
        "outcome": "failed",
        "error": "MlflowException: the tracking server failed",
        "promoted": True,
        "model_version": "7",
        "champion_version": "7",
        "served_version": "7",
        "hub": None,
        "hub_retry": {"pushed": True, "repo_id": "acme/m", "commit_id": "abc123", "version": "7"},
    }
    html = retrain.failure_alert(outcome, "run-2").html
    assert "after it promoted version 7 to champion" in html and "serves version 7" in html
    assert "unchanged" not in html
    assert "pushed to acme/m at abc123 (retried by the ModelRunner)" in html


def test_a_job_still_training_at_the_timeout_is_cancelled_and_mails_once(
    dagbag, runner, mailbox, variables, deferrals
):
    dag = fast(dagbag.get_dag("weekly_retrain"))
    # 3 seconds: the trigger fires timed_out while the job still trains
    run = dag.test(
        run_conf={"task": "sentiment", "dataset": str(runner.home / "data"), "timeout_minutes": 0.05}
    )

    (event,) = deferrals["events"]
    assert event["status"] == "timed_out" and event["state"] in ("queued", "running")
    assert xcom(run, WAIT, map_index=0)["state"] == "timed_out"
    outcome = xcom(run, "retrain.choose_outcome", key="outcome", map_index=0)
    assert outcome["outcome"] == "timed_out" and "cancellation requested" in outcome["error"]
    assert states(run)["retrain.report_success[0]"] == "skipped"
    assert states(run)["retrain.publish_champion[0]"] == "skipped"
    (mail,) = mailbox.messages
    assert "timed_out" in mail["Subject"] and outcome["job_id"] in mail["Subject"]
    # the cancellation reaches the job: it ends cancelled, never promoted
    deadline = time.monotonic() + 120
    with runner.client() as c:
        while (job := c.get(f"/train/{outcome['job_id']}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(1)
    assert job["state"] == "cancelled" and not job.get("promoted")


def test_a_start_behind_another_tasks_job_defers_until_it_ended_then_starts(
    dagbag, runner, mailbox, variables, deferrals
):
    """The ModelRunner trains one job at a time: a retrain of emotion while a sentiment job trains waits
    for that job in the triggerer (not a 409 failure, not following the wrong job), then starts its own."""
    with runner.client() as c:
        body = {"task": "sentiment", "dataset": str(runner.home / "data"), "adapters": ["linear"], "folds": 2}
        response = c.post("/train", json=body)
        assert response.status_code == 202, response.text
        sentiment_job = response.json()["job_id"]

    dag = fast(dagbag.get_dag("weekly_retrain"))
    # a dataset that cannot train: the emotion job fails fast and leaves no emotion champion behind
    run = dag.test(run_conf={"task": "emotion", "dataset": str(runner.home / "bad" / "train.jsonl")})

    # first the start deferred on the sentiment job, then the wait on the emotion job
    blocked, waited = deferrals["deferred"]
    assert (blocked["task_id"], blocked["job_id"], blocked["next_method"]) == (
        START,
        sentiment_job,
        "execute",
    )
    assert blocked["job_state"] in ("queued", "running")
    assert (deferrals["events"][0]["status"], deferrals["events"][0]["job_id"]) == ("done", sentiment_job)
    started = xcom(run, START, map_index=0)
    assert started["job_id"] not in (None, sentiment_job) and started["adopted"] is False
    assert (waited["task_id"], waited["job_id"]) == (WAIT, started["job_id"])
    assert started["request"]["task"] == "emotion"
    with runner.client() as c:
        assert c.get(f"/train/{sentiment_job}").json()["state"] == "succeeded"
        assert c.get(f"/train/{started['job_id']}").json()["task"] == "emotion"
    outcome = xcom(run, "retrain.choose_outcome", key="outcome", map_index=0)
    assert outcome["outcome"] == "failed"
    assert mailbox.keys() == [f"training-failed:{run.run_id}:emotion"]
