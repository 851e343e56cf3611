"""The weekly retrain: start a training job, wait for it, branch on the outcome, report or alert.

Labelled feedback needs nothing here: every training job of the ModelRunner adds the task's
``labelled_examples`` rows with ``source='feedback'`` (``include_feedback``, on by default).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from tweetpulse_dags import emails
from tweetpulse_dags.alerting import Alert
from tweetpulse_dags.runner_api import FINAL_STATES, ModelRunner, TrainingJob
from tweetpulse_dags.runner_client import JobConflict, RunnerError

log = logging.getLogger(__name__)

SUCCESS_TASK, FAILURE_TASK = "report_success", "alert_failure"
_HEADLINE = ("macro_recall", "macro_f1", "accuracy")
# after a job ends the ModelRunner reconciles (reload, served version, Hub push retry) and then marks
# the job ``settled``; a view without the field comes from an older ModelRunner and is settled as is
SETTLE_GRACE_S = 300.0


def training_request(params: dict[str, Any]) -> dict[str, Any]:
    """The POST /train body from the run's Params (null means: the ModelRunner's default)."""
    body = {
        "task": params.get("task") or None,  # null: the ModelRunner's first declared task
        "dataset": params.get("dataset") or None,
        "label_map": params.get("label_map") or None,
        "text_column": params.get("text_column") or None,
        "label_column": params.get("label_column") or None,
        "adapters": params.get("adapters") or None,
        "folds": params.get("folds"),
        "sample_fraction": params.get("sample_fraction"),
        "include_feedback": params.get("include_feedback", True),
    }
    return {k: v for k, v in body.items() if v is not None}


def start(runner: ModelRunner, params: dict[str, Any]) -> dict[str, Any]:
    body = training_request(params)
    try:
        job_id, adopted = runner.start_training(body), False
    except JobConflict as exc:
        if not exc.job_id:
            raise
        # a job is already running (often our own, when a retry follows a lost response): follow it
        job_id, adopted = exc.job_id, True
        log.warning("a training job is already running; following job %s instead of starting another", job_id)
    log.info("training job %s %s with %s", job_id, "adopted" if adopted else "started", body)
    return {"job_id": job_id, "adopted": adopted, "request": body, "started_at": time.time()}


def poke(runner: ModelRunner, job: dict[str, Any], timeout_minutes: float) -> tuple[bool, dict | None]:
    """Done when the job ended or ran past the timeout; the sensor reschedules otherwise."""
    view = runner.training_job(job["job_id"])
    done = 100 * view["progress"]
    detail = f" ({view['detail']})" if view.get("detail") else ""
    log.info("job %s: %s, stage %s%s, %.0f%%", view["job_id"], view["state"], view.get("stage"), detail, done)
    if view["state"] in FINAL_STATES:
        if view.get("settled", True) or _ended_seconds_ago(view) > SETTLE_GRACE_S:
            return True, {"state": view["state"]}
        log.info("job %s ended (%s); waiting for the ModelRunner to reconcile", view["job_id"], view["state"])
        return False, None
    waited = time.time() - job["started_at"]
    if waited > timeout_minutes * 60:
        log.warning("job %s still %s after %.1f min: timing out", view["job_id"], view["state"], waited / 60)
        return True, {"state": "timed_out", "waited_minutes": round(waited / 60, 2)}
    return False, None


def _ended_seconds_ago(view: dict[str, Any]) -> float:
    """Seconds since the job's ``finished_at`` (the sensor keeps no state between pokes)."""
    try:
        finished = datetime.fromisoformat(view["finished_at"])
    except (KeyError, TypeError, ValueError):
        return float("inf")
    return time.time() - finished.timestamp()


def decide(runner: ModelRunner, job: dict[str, Any] | None, timeout_minutes: float) -> tuple[str, dict]:
    """Which branch follows, and the outcome both branches read (always fetched fresh)."""
    if not job:
        error = "the training job could not be started; see the start_training log"
        return FAILURE_TASK, {"state": "not_started", "outcome": "not_started", "error": error}
    view = runner.training_job(job["job_id"])
    if view["state"] == "succeeded":
        return SUCCESS_TASK, {**view, "outcome": "succeeded"}
    if view["state"] in ("queued", "running"):
        # the wait timed out (or the sensor failed): stop the job so it cannot promote behind our back
        try:
            view = runner.cancel_training(view["job_id"])
        except RunnerError as exc:
            log.error("could not cancel job %s: %s", view["job_id"], exc)
        error = f"no result within {timeout_minutes:g} minutes; cancellation requested"
        return FAILURE_TASK, {**view, "outcome": "timed_out", "error": error}
    return FAILURE_TASK, {**view, "outcome": view["state"]}


def success_summary(view: TrainingJob) -> dict[str, Any]:
    metrics = view.get("metrics") or {}
    summary = {
        "job_id": view["job_id"],
        "task": view.get("task"),
        "model_version": view.get("model_version"),
        "promoted": view.get("promoted"),
        "served_version": view.get("served_version"),
        "metrics": {k: metrics[k] for k in _HEADLINE if k in metrics},
        "mlflow_run_id": view.get("mlflow_run_id"),
        "mlflow_run_url": view.get("mlflow_run_url"),
    }
    log.info(
        "training job %s succeeded: version %s %s; %s; MLflow run %s",
        summary["job_id"],
        summary["model_version"],
        "promoted to champion" if summary["promoted"] else "not promoted (the champion stays)",
        ", ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items()),
        summary["mlflow_run_url"] or summary["mlflow_run_id"],
    )
    return summary


def failure_alert(outcome: dict[str, Any], run_id: str, mlflow_ui: str | None = None) -> Alert:
    job_id = outcome.get("job_id")
    state = outcome.get("outcome") or outcome.get("state", "failed")
    error = outcome.get("error") or "(no error message)"
    # one incident per DAG run: a retry or a re-run of this run (even one that started another job)
    # never mails twice
    key = f"training-failed:{run_id}"
    mlflow = outcome.get("mlflow_run_url") or outcome.get("mlflow_run_id") or "no MLflow run"
    facts = [
        ("Outcome", state),
        ("Job id", job_id or "none"),
        ("Task", outcome.get("task", "sentiment")),
        ("Stage", outcome.get("stage") or "n/a"),
        ("Error", error),
        ("MLflow run", mlflow),
        ("Airflow run", run_id),
    ]
    if outcome.get("mlflow_run_url"):
        links = [f"<p>{emails.link(outcome['mlflow_run_url'], 'Open the MLflow run')}</p>"]
    elif mlflow_ui:  # no run recorded for this job: point at the MLflow UI instead
        links = [f"<p>{emails.link(mlflow_ui, 'Open the MLflow UI')}</p>"]
    else:
        links = []
    served = outcome.get("served_version")
    if outcome.get("promoted"):
        version = outcome.get("model_version") or outcome.get("champion_version")
        intro = (
            f"The training ended {state} after it promoted version {version or '?'} to champion; the "
            f"service now serves version {served or 'unknown'}."
        )
        facts.insert(1, ("Promoted", f"yes, version {version or '?'}"))
    elif served:
        intro = f"The served model is unchanged (version {served}): this training did not replace it."
    else:
        intro = "This training did not replace the served model."
    facts.insert(2 if outcome.get("promoted") else 1, ("Served version", served or "unknown"))
    if hub := outcome.get("hub_retry") or outcome.get("hub"):
        facts.append(
            ("Hub push", _hub_text(hub, retried="hub_retry" in outcome and bool(outcome["hub_retry"])))
        )
    html = emails.page(f"Weekly retrain {state}", intro=intro, facts=facts, sections=links)
    summary = f"training {state}: job {job_id or 'none'}: {error}"
    subject = f"[tweetpulse] Weekly retrain {state}: job {job_id or 'none'}"
    return Alert(key=key, kind="training", subject=subject, html=html, summary=summary[:500])


def _hub_text(hub: dict[str, Any], *, retried: bool = False) -> str:
    if hub.get("pushed"):
        suffix = " (retried by the ModelRunner)" if retried else ""
        return f"pushed to {hub.get('repo_id')} at {hub.get('commit_id')}{suffix}"
    return f"not pushed: {hub.get('reason') or hub.get('error') or 'unknown'}"
