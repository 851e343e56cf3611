"""weekly_retrain: retrain every task with a champion on schedule, or one task from the UI with Params."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowSkipException
from tweetpulse_dags import config, retrain
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.assets import CHAMPION
from tweetpulse_dags.notifiers import callbacks
from tweetpulse_dags.operators import StartTrainingOperator, WaitForTrainingOperator
from tweetpulse_dags.runner_api import ModelRunner

DOC = """
### Weekly retrain

**retrain_targets** lists what to retrain: with the `task` Param `all` (the default, and every
scheduled run) every task the ModelRunner declares (`GET /tasks`) that has a champion, plus those
with a `schedule` in the tasks file (their first training makes the champion); a task name retrains
just that task. Then, mapped over the targets (one **retrain** group per task, one job at a time):

1. **start_training**: `POST /train` with the run's Params for that task; a job of the same task
   already running is followed; while another task's job trains, the start defers until it ends.
2. **wait_for_training** defers to the triggerer (`TrainingJobTrigger` polls `GET /train/{job_id}`
   asynchronously every minute): no worker slot and no reschedule loop while the job trains.
3. **choose_outcome** decides on the job's final state (report_success or alert_failure runs, the
   other skips itself); a job still running at `timeout_minutes` is cancelled.
4. **report_success** logs and returns (XCom) the metrics, whether the model was promoted, its
   version and the MLflow run; **publish_champion** then emits an event on the Asset
   `tweetpulse_champion` when the job promoted a new champion (skipped otherwise), which triggers
   `regression_check`. **alert_failure** sends ONE e-mail (SMTP connection `smtp_default`,
   recipients Variable `tweetpulse_alert_to`) for a failed, cancelled, timed-out or unstartable job.

A run that fails (a task failed after its retries) mails once per incident (`on_failure_callback`);
a successful run closes the incident. Labelled feedback (`model-runner label import`,
`POST /labels`) joins every retrain automatically.
"""

GROUP = "retrain"
_, SCHEDULE = config.retrain_schedule()


def _runner() -> ModelRunner:
    return ModelRunner.from_connection(config.RUNNER_CONN_ID)


@dag(
    dag_id="weekly_retrain",
    schedule=SCHEDULE,  # the first declared task with a `schedule` in the tasks file (default @weekly)
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # no max_active_runs=1: a run that starts while another's job trains follows that job (409), so a
    # scheduled run and a UI trigger at the same time share one training instead of queueing a second
    tags=["tweetpulse", "training"],
    doc_md=DOC,
    default_args=config.default_args(),
    **callbacks(),
    params={
        "task": Param(
            "all",
            enum=["all", *config.task_names()],
            description="all: every task with a champion (and scheduled ones); or one task",
        ),
        "dataset": Param(
            None, type=["null", "string"], minLength=1, description="Path on the ModelRunner host or Hub id"
        ),
        "label_map": Param(
            None,
            type=["null", "object"],
            additionalProperties={"type": "string", "minLength": 1},
            description='Raw label -> class, e.g. {"0": "negative", "2": "neutral", "4": "positive"}',
        ),
        "text_column": Param(
            None, type=["null", "string"], minLength=1, description="Field holding the text"
        ),
        "label_column": Param(
            None, type=["null", "string"], minLength=1, description="Field holding the label"
        ),
        "adapters": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": ["linear", "mlp", "lora", "finetune", "distill"]},
            minItems=1,
            uniqueItems=True,
            description="Adapters to cross-validate (null: the ModelRunner's default)",
        ),
        "folds": Param(None, type=["null", "integer"], minimum=2, maximum=20, description="CV folds"),
        "sample_fraction": Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=1, description="Train on a sample"
        ),
        "include_feedback": Param(True, type="boolean", description="Add the labelled feedback rows"),
        "timeout_minutes": Param(
            360, type="number", minimum=0.05, maximum=2880, description="Give up (and cancel) after this"
        ),
    },
)
def weekly_retrain():
    @task(execution_timeout=timedelta(minutes=5))
    def retrain_targets(params=None) -> list[str]:
        if params["task"] != "all":
            return [params["task"]]
        with _runner() as runner:
            return retrain.targets(runner)

    @task_group(group_id=GROUP)
    def retrain_one(task_name: str):
        job = StartTrainingOperator(
            task_id="start_training",
            task_name=task_name,
            max_active_tis_per_dagrun=1,  # the ModelRunner trains one job at a time
            execution_timeout=timedelta(minutes=5),
        )
        waited = WaitForTrainingOperator(
            task_id="wait_for_training", job=job.output, execution_timeout=timedelta(minutes=3), retries=3
        )

        @task(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=5))
        def choose_outcome(params=None, ti=None) -> str:
            """Which of report_success / alert_failure runs (the other skips itself); the outcome both
            read goes to XCom ``outcome``. (Not a branch operator: skipping inside a mapped group is
            done by the two tasks, so each map index keeps its own path.)"""
            started = ti.xcom_pull(task_ids=f"{GROUP}.start_training")
            with _runner() as runner:
                branch, outcome = retrain.decide(runner, started, float(params["timeout_minutes"]))
            ti.xcom_push(key="outcome", value=outcome)
            return branch

        def _outcome(ti, wanted: str) -> dict:
            if ti.xcom_pull(task_ids=f"{GROUP}.choose_outcome") != wanted:
                raise AirflowSkipException(f"the outcome did not lead to {wanted}")
            return ti.xcom_pull(task_ids=f"{GROUP}.choose_outcome", key="outcome")

        @task(execution_timeout=timedelta(minutes=2))
        def report_success(ti=None) -> dict:
            return retrain.success_summary(_outcome(ti, retrain.SUCCESS_TASK))

        @task(outlets=[CHAMPION], execution_timeout=timedelta(minutes=2))
        def publish_champion(summary: dict, outlet_events=None) -> dict:
            """Only a promotion updates the champion Asset (a skipped task emits no event)."""
            if not summary.get("promoted"):
                raise AirflowSkipException(f"version {summary.get('model_version')} was not promoted")
            extra = {
                "task": summary["task"],
                "version": summary["model_version"],
                "job_id": summary["job_id"],
            }
            outlet_events[CHAMPION].extra = extra
            return extra

        @task(execution_timeout=timedelta(minutes=5))
        def alert_failure(name: str, ti=None) -> str:
            outcome = _outcome(ti, retrain.FAILURE_TASK)
            run_id = get_current_context()["run_id"]
            with _runner() as runner:
                sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
                mlflow_ui = config.get_variable(config.VAR_MLFLOW_UI, "") or None
                return sender.send_once(retrain.failure_alert(outcome, run_id, mlflow_ui, task=name))

        summary = report_success()
        job >> waited >> choose_outcome() >> [summary, alert_failure(task_name)]
        publish_champion(summary)

    retrain_one.expand(task_name=retrain_targets())


weekly_retrain()
