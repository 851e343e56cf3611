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

    # the alert task retried (or re-run) for the same job mails nothing more
    with ModelRunner(RunnerConfig(runner.url, token=TOKEN)) as client:
        sender = AlertSender(client, SmtpMailer(), ["mlops@example.com"])
        assert sender.send_once(retrain.failure_alert(outcome, run.run_id)) == "already_sent"
    assert len(mailbox.messages) == 1
