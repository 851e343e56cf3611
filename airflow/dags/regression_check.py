"""regression_check: the champion against earlier versions, and live tweets against the training data."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
    task_group,
)
from tweetpulse_dags import config, regression
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.assets import CHAMPION
from tweetpulse_dags.notifiers import callbacks
from tweetpulse_dags.runner_api import ModelRunner

DOC = """
### Daily regression and drift check

Runs daily (00:00 UTC) and whenever a promotion updates the Asset `tweetpulse_champion` (emitted by
`weekly_retrain`). **check_targets** lists the tasks to check: with the `task` Param `all` (the default,
and every scheduled or Asset-triggered run) every task that has a champion (`GET /tasks` +
`GET /model/versions`), emotion included; a task name checks just that task. One **check** group per
task (mapped), with its own alerts:

* **check_registry**: `GET /model/versions`; the champion's macro recall and per-class recall
  against the best of the previous `versions` versions. An incident when macro recall fell by more
  than `macro_recall_drop` or a class recall by more than `class_recall_drop`.
* **check_live_data**: `GET /drift` over the last `drift_days` days of inspected tweets: the cosine
  distance between the embedding centroids of the tweets and of the training data (pgvector, in SQL)
  above `drift_distance`, or one predicted class above `collapse_share` (a collapse). Needs at least
  `min_volume` tweets.
* **send_alerts**: one e-mail per incident through `smtp_default`, de-duplicated in the ModelRunner's
  alert ledger (retries and re-runs send nothing twice); cleared live-data incidents are resolved.

A run that fails (a task failed after its retries, e.g. the ModelRunner down) mails once per
incident (`on_failure_callback`); a successful run closes the incident.

Thresholds: a Param given at trigger time > Variable `tweetpulse_thresholds` (JSON) > the defaults
in `tweetpulse_dags/config.py`.
"""


def _runner() -> ModelRunner:
    return ModelRunner.from_connection(config.RUNNER_CONN_ID)


def _number(description: str, maximum: float = 1.0) -> Param:
    return Param(None, type=["null", "number"], minimum=0, maximum=maximum, description=description)


@dag(
    dag_id="regression_check",
    # daily, or at once when a promotion updates the champion Asset
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=CHAMPION),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tweetpulse", "monitoring"],
    doc_md=DOC,
    default_args=config.default_args(),
    **callbacks(),
    params={
        "task": Param(
            "all", enum=["all", *config.task_names()], description="all: every task with a champion; or one"
        ),
        "versions": Param(None, type=["null", "integer"], minimum=1, maximum=50, description="Versions back"),
        "macro_recall_drop": _number("Alert when macro recall fell by more than this"),
        "class_recall_drop": _number("Alert when one class's recall fell by more than this"),
        "drift_days": _number("Live window in days", 90),
        "drift_distance": _number("Centroid cosine distance threshold", 2),
        "collapse_share": _number("One class above this share is a collapse"),
        "min_volume": _number("Fewest tweets for a live-data verdict", 1_000_000),
    },
)
def regression_check():
    @task(execution_timeout=timedelta(minutes=5))
    def check_targets(params=None) -> list[str]:
        if params["task"] != "all":
            return [params["task"]]
        with _runner() as runner:
            return regression.targets(runner)

    @task_group(group_id="check")
    def check(task_name: str):
        @task(execution_timeout=timedelta(minutes=5))
        def check_registry(name: str, params=None) -> list[dict]:
            th = config.thresholds(params)
            with _runner() as runner:
                versions = runner.model_versions(name, int(th["versions"]) + 20)
            return [i.to_dict() for i in regression.registry_incidents(name, versions, th)]

        @task(execution_timeout=timedelta(minutes=20))
        def check_live_data(name: str, params=None) -> dict:
            th = config.thresholds(params)
            until = config.run_anchor(get_current_context()).isoformat()
            with _runner() as runner:
                runner.prepare_drift_reference(name)  # GET /drift only reads
                drift = runner.drift(name, th["drift_days"], until)
                champion = regression.champion_of(runner.model_versions(name, 50))
            version = champion["version"] if champion else "none"
            incidents, clear = regression.live_incidents(name, drift, version, th)
            return {"incidents": [i.to_dict() for i in incidents], "clear": clear, "drift": drift}

        @task(execution_timeout=timedelta(minutes=10))
        def send_alerts(name: str, registry: list[dict], live: dict, params=None) -> dict:
            th = config.thresholds(params)
            until = config.run_anchor(get_current_context())
            since = until - timedelta(days=float(th["drift_days"]))
            with _runner() as runner:
                sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
                sent = {i["key"]: sender.send_once(regression.incident_alert(i, None)) for i in registry}
                for incident in live["incidents"]:
                    summary = runner.summary(name, since.isoformat(), until.isoformat())
                    sent[incident["key"]] = sender.send_once(regression.incident_alert(incident, summary))
                resolved = runner.resolve_alerts(live["clear"]) if live["clear"] else 0
            return {"task": name, "sent": sent, "resolved": resolved}

        send_alerts(task_name, check_registry(task_name), check_live_data(task_name))

    check.expand(task_name=check_targets())


regression_check()
