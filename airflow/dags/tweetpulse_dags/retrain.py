"""The weekly retrain's decisions: what to retrain, the POST /train body, following or waiting behind a
running job, what the deferred wait hands on, the outcome, the report and the failure alert.

Labelled feedback needs nothing here: every training job of the ModelRunner adds the task's
``labelled_examples`` rows with ``source='feedback'`` (``include_feedback``, on by default).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tweetpulse_dags import emails
from tweetpulse_dags.alerting import Alert
from tweetpulse_dags.runner_api import ModelRunner, TrainingJob
from tweetpulse_dags.runner_client import JobConflict, RunnerError

log = logging.getLogger(__name__)

SUCCESS_TASK, FAILURE_TASK = "report_success", "alert_failure"
_HEADLINE = ("macro_recall", "macro_f1", "accuracy")


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
    """Start a job, or follow the one already running for the same task. While another task's job
    runs (the ModelRunner trains one job at a time) nothing starts: ``blocked_by`` names that job and
    the caller waits for it, then tries again."""
    body = training_request(params)
    try:
        job_id, adopted = runner.start_training(body), False
    except JobConflict as exc:
        if not exc.job_id:
            raise
        running = runner.training_job(exc.job_id)
        if body.get("task") and running.get("task") and running["task"] != body["task"]:
            log.info("job %s trains %s: %s waits for it", exc.job_id, running["task"], body["task"])
            return {
                "job_id": None,
                "blocked_by": exc.job_id,
                "blocked_task": running["task"],
                "request": body,
            }
        # a job of this task is already running (often our own, when a retry follows a lost
        # response, or a UI trigger beside the scheduled run): follow it
        job_id, adopted = exc.job_id, True
        log.warning("a training job is already running; following job %s instead of starting another", job_id)
    log.info("training job %s %s with %s", job_id, "adopted" if adopted else "started", body)
    return {"job_id": job_id, "adopted": adopted, "request": body, "started_at": time.time()}


def targets(runner: ModelRunner) -> list[str]:
    """What a scheduled run retrains: every task the ModelRunner declares that has a champion, and those
    with a ``schedule`` in the tasks file (their first training makes the champion), in declared order."""
    chosen = []
    for declared in runner.declared_tasks():
        name = declared["name"]
        champion = runner.champion_version(name) if declared.get("served", True) else None
        if champion or str(declared.get("schedule") or "").strip():
            chosen.append(name)
            log.info("retraining %s (champion %s)", name, f"v{champion}" if champion else "none yet")
        else:
            log.info("not retraining %s: no champion and no schedule", name)
    return chosen


def wait_outcome(event: dict[str, Any]) -> dict[str, Any]:
    """What the deferred wait hands on (XCom), from the trigger's event; a refused or unreachable
    service fails the task (Airflow retries the wait, which defers again)."""
    if event["status"] == "error":
        raise RunnerError(None, "wait_failed", f"waiting for job {event['job_id']}: {event.get('error')}")
    if event["status"] == "timed_out":
        log.warning("job %s still %s at the timeout", event["job_id"], event["state"])
        return {"state": "timed_out", "job_state": event["state"], "polls": event["polls"]}
    log.info("job %s ended %s (%d polls)", event["job_id"], event["state"], event["polls"])
    return {"state": event["state"], "polls": event["polls"]}


def decide(runner: ModelRunner, job: dict[str, Any] | None, timeout_minutes: float) -> tuple[str, dict]:
    """Which branch follows, and the outcome both branches read (always fetched fresh)."""
    if not job or not job.get("job_id"):
        error = "the training job could not be started; see the start_training log"
        return FAILURE_TASK, {"state": "not_started", "outcome": "not_started", "error": error}
    view = runner.training_job(job["job_id"])
    if view["state"] == "succeeded":
        return SUCCESS_TASK, {**view, "outcome": "succeeded"}
    if view["state"] in ("queued", "running"):
        # the wait timed out (or failed): stop the job so it cannot promote behind our back
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


def failure_alert(
    outcome: dict[str, Any], run_id: str, mlflow_ui: str | None = None, *, task: str | None = None
) -> Alert:
    task = task or outcome.get("task") or "sentiment"
    job_id = outcome.get("job_id")
    state = outcome.get("outcome") or outcome.get("state", "failed")
    error = outcome.get("error") or "(no error message)"
    # one incident per DAG run and task: a retry or a re-run of this run (even one that started
    # another job) never mails twice
    key = f"training-failed:{run_id}:{task}"
    mlflow = outcome.get("mlflow_run_url") or outcome.get("mlflow_run_id") or "no MLflow run"
    facts = [
        ("Outcome", state),
        ("Job id", job_id or "none"),
        ("Task", task),
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
    subject = f"[tweetpulse] Weekly retrain of {task} {state}: job {job_id or 'none'}"
    return Alert(key=key, kind="training", subject=subject, html=html, summary=summary[:500])


def _hub_text(hub: dict[str, Any], *, retried: bool = False) -> str:
    if hub.get("pushed"):
        suffix = " (retried by the ModelRunner)" if retried else ""
        return f"pushed to {hub.get('repo_id')} at {hub.get('commit_id')}{suffix}"
    return f"not pushed: {hub.get('reason') or hub.get('error') or 'unknown'}"
