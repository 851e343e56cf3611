"""regression_check: the champion against earlier versions, and live tweets against the training data."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from tweetpulse_dags import config, regression
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.runner_api import ModelRunner

DOC = """
### Daily regression and drift check

* **check_registry**: `GET /model/versions`; the champion's macro recall and per-class recall
  against the best of the previous `versions` versions. An incident when macro recall fell by more
  than `macro_recall_drop` or a class recall by more than `class_recall_drop`.
* **check_live_data**: `GET /drift` over the last `drift_days` days of inspected tweets: the cosine
  distance between the embedding centroids of the tweets and of the training data (pgvector, in SQL)
  above `drift_distance`, or one predicted class above `collapse_share` (a collapse). Needs at least
  `min_volume` tweets.
* **send_alerts**: one e-mail per incident through `smtp_default`, de-duplicated in the ModelRunner's
  alert ledger (retries and re-runs send nothing twice); cleared live-data incidents are resolved.

Thresholds: a Param given at trigger time > Variable `tweetpulse_thresholds` (JSON) > the defaults
in `tweetpulse_dags/config.py`.
"""


def _runner() -> ModelRunner:
    return ModelRunner.from_connection(config.RUNNER_CONN_ID)


def _number(description: str, maximum: float = 1.0) -> Param:
    return Param(None, type=["null", "number"], minimum=0, maximum=maximum, description=description)


@dag(
    dag_id="regression_check",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tweetpulse", "monitoring"],
    doc_md=DOC,
    default_args=config.default_args(),
    params={
        "task": Param(config.task_names()[0], enum=config.task_names(), description="Which task to check"),
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
    def check_registry(params=None) -> list[dict]:
        th = config.thresholds(params)
        with _runner() as runner:
            versions = runner.model_versions(params["task"], int(th["versions"]) + 20)
        return [i.to_dict() for i in regression.registry_incidents(params["task"], versions, th)]

    @task(execution_timeout=timedelta(minutes=20))
    def check_live_data(params=None) -> dict:
        th = config.thresholds(params)
        until = config.run_anchor(get_current_context()).isoformat()
        with _runner() as runner:
            runner.prepare_drift_reference(params["task"])  # GET /drift only reads
            drift = runner.drift(params["task"], th["drift_days"], until)
            champion = regression.champion_of(runner.model_versions(params["task"], 50))
        version = champion["version"] if champion else "none"
        incidents, clear = regression.live_incidents(params["task"], drift, version, th)
        return {"incidents": [i.to_dict() for i in incidents], "clear": clear, "drift": drift}

    @task(execution_timeout=timedelta(minutes=10))
    def send_alerts(registry: list[dict], live: dict, params=None) -> dict:
        th = config.thresholds(params)
        until = config.run_anchor(get_current_context())
        since = until - timedelta(days=float(th["drift_days"]))
        with _runner() as runner:
            sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
            sent = {i["key"]: sender.send_once(regression.incident_alert(i, None)) for i in registry}
            for incident in live["incidents"]:
                summary = runner.summary(params["task"], since.isoformat(), until.isoformat())
                sent[incident["key"]] = sender.send_once(regression.incident_alert(incident, summary))
            resolved = runner.resolve_alerts(live["clear"]) if live["clear"] else 0
        return {"sent": sent, "resolved": resolved}

    send_alerts(check_registry(), check_live_data())


regression_check()
