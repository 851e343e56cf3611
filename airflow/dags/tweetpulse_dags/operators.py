"""The two deferrable steps of a retrain: start a training job, and wait for it in the triggerer.

Both give their worker slot back while a job trains (``self.defer`` to :class:`TrainingJobTrigger`):
no sensor pokes, no reschedule loop. The ModelRunner trains one job at a time (409 otherwise), so a
start that finds another task's job running waits for that job in the triggerer, then starts its own.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from tweetpulse_dags import retrain
from tweetpulse_dags.config import RUNNER_CONN_ID
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.triggers import TrainingJobTrigger

POLL = timedelta(minutes=1)
BACKSTOP = timedelta(hours=49)  # the deferral's own limit; timeout_minutes (<= 48 h) decides first


class StartTrainingOperator(BaseOperator):
    """``POST /train`` for ``task_name`` with the run's Params; returns the job (XCom)."""

    template_fields = ("task_name", "timeout_minutes")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        task_name: str,
        timeout_minutes: Any = "{{ params.timeout_minutes }}",
        poll_interval: float = POLL.total_seconds(),
        conn_id: str = RUNNER_CONN_ID,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.task_name, self.timeout_minutes = task_name, timeout_minutes
        self.poll_interval, self.conn_id = poll_interval, conn_id

    def execute(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if event is not None and event["status"] == "timed_out":
            raise RuntimeError(
                f"the ModelRunner was still training job {event['job_id']} (another task) after "
                f"{float(self.timeout_minutes):g} minutes; {self.task_name} was not started"
            )
        params = {**context["params"], "task": self.task_name}
        with ModelRunner.from_connection(self.conn_id) as runner:
            job = retrain.start(runner, params)
        if job.get("blocked_by"):
            deadline = time.time() + float(self.timeout_minutes) * 60
            trigger = TrainingJobTrigger(
                job_id=job["blocked_by"], deadline=deadline, poll_s=self.poll_interval, conn_id=self.conn_id
            )
            self.defer(trigger=trigger, method_name="execute", timeout=BACKSTOP)  # then try again
        return job


class WaitForTrainingOperator(BaseOperator):
    """Defers until the job ended or ``timeout_minutes`` passed since it started; returns
    ``{"state": ...}`` (``timed_out`` for a job still running at the timeout)."""

    template_fields = ("job", "timeout_minutes")
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        job: Any,
        timeout_minutes: Any = "{{ params.timeout_minutes }}",
        poll_interval: float = POLL.total_seconds(),
        conn_id: str = RUNNER_CONN_ID,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.job, self.timeout_minutes = job, timeout_minutes
        self.poll_interval, self.conn_id = poll_interval, conn_id

    def execute(self, context: Any) -> None:
        deadline = float(self.job["started_at"]) + float(self.timeout_minutes) * 60
        trigger = TrainingJobTrigger(
            job_id=self.job["job_id"], deadline=deadline, poll_s=self.poll_interval, conn_id=self.conn_id
        )
        self.log.info(
            "deferring: the triggerer polls job %s every %g s", self.job["job_id"], self.poll_interval
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=BACKSTOP)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        return retrain.wait_outcome(event)
