"""weekly_retrain end to end: dag.test() against the real ModelRunner, mail into the SMTP sink."""

from __future__ import annotations

from tweetpulse_dags import retrain
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import RunnerConfig

from tests.airflow.conftest import TOKEN, fast, states, xcom


def test_success_reports_metrics_version_and_mlflow_run_without_mail(dagbag, runner, mailbox, variables):
    dag = fast(dagbag.get_dag("weekly_retrain"))
    run = dag.test(run_conf={"dataset": str(runner.home / "data"), "adapters": ["linear"], "folds": 2})

    assert states(run)["report_success"] == "success", states(run)
    assert states(run)["alert_failure"] == "skipped"
    summary = xcom(run, "report_success")
    assert summary["model_version"] and summary["promoted"] in (True, False)
    # the job view is read once the ModelRunner reconciled: it says what is really served
    assert summary["served_version"]
    if summary["promoted"]:
        assert summary["served_version"] == summary["model_version"]
    assert 0 <= summary["metrics"]["macro_recall"] <= 1
    assert summary["mlflow_run_url"].startswith("http://mlflow.test:5000/#/experiments/")
    assert mailbox.messages == []


def test_a_failed_job_sends_exactly_one_mail(dagbag, runner, mailbox, variables):
    dag = fast(dagbag.get_dag("weekly_retrain"))
    run = dag.test(run_conf={"dataset": str(runner.home / "bad" / "train.jsonl")})

    assert states(run)["alert_failure"] == "success" and states(run)["report_success"] == "skipped"
    outcome = xcom(run, "choose_outcome", key="outcome")
    assert outcome["state"] == "failed" and outcome["error"]
    (mail,) = mailbox.messages
    body = mailbox.body(mail)
    assert outcome["job_id"] in mail["Subject"] and outcome["job_id"] in body
    assert mail["X-Tweetpulse-Alert-Key"] == f"training-failed:{run.run_id}"
    assert "MLflow run" in body and outcome["error"].split(":")[0] in body
    # the mail says what is served, as the ModelRunner found it after the job
    assert outcome["settled"] is True and outcome["promoted"] is False
    assert "Served version" in body and "did not replace" in body
    if outcome["served_version"]:
        assert f"version {outcome['served_version']}" in body

    # the alert task retried (or re-run) for the same job mails nothing more
    with ModelRunner(RunnerConfig(runner.url, token=TOKEN)) as client:
        sender = AlertSender(client, SmtpMailer(), ["mlops@example.com"])
        assert sender.send_once(retrain.failure_alert(outcome, run.run_id)) == "already_sent"
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
