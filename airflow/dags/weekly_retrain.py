"""weekly_retrain: retrain a task's model on its schedule (tasks file) or from the UI with Params."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, get_current_context, task
from tweetpulse_dags import config, retrain
from tweetpulse_dags.alerting import AlertSender, SmtpMailer
from tweetpulse_dags.runner_api import ModelRunner

DOC = """
### Weekly retrain

1. **start_training**: `POST /train` on the ModelRunner (connection `model_runner`) with the run's
   Params; if a job is already running it is followed instead of starting a second one.
2. **wait_for_training**: a sensor in *reschedule* mode (no worker slot held between pokes) polls
   `GET /train/{job_id}` until the job ends or `timeout_minutes` pass.
3. **choose_outcome** branches on the job's final state; a job still running at the timeout is cancelled.
4. **report_success** logs and returns (XCom) the metrics, whether the model was promoted, its
   version and the MLflow run; **alert_failure** sends ONE e-mail (SMTP connection `smtp_default`,
   recipients Variable `tweetpulse_alert_to`) for a failed, cancelled, timed-out or unstartable job.

Labelled feedback (`model-runner label import`, `POST /labels`) joins every retrain automatically.
"""

POKE = timedelta(minutes=1)
TASK, SCHEDULE = config.retrain_schedule()


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
    params={
        "task": Param(TASK, enum=config.task_names(), description="Which task to retrain"),
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
    def start_training(params=None) -> dict:
        with _runner() as runner:
            return retrain.start(runner, dict(params))

    @task.sensor(
        mode="reschedule",
        poke_interval=POKE.total_seconds(),
        timeout=timedelta(hours=49).total_seconds(),  # backstop; timeout_minutes decides first
        execution_timeout=timedelta(minutes=3),
        retries=3,
    )
    def wait_for_training(job: dict, params=None) -> PokeReturnValue:
        with _runner() as runner:
            done, state = retrain.poke(runner, job, float(params["timeout_minutes"]))
        return PokeReturnValue(is_done=done, xcom_value=state)

    @task.branch(trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=5))
    def choose_outcome(params=None, ti=None) -> str:
        job = ti.xcom_pull(task_ids="start_training")
        with _runner() as runner:
            branch, outcome = retrain.decide(runner, job, float(params["timeout_minutes"]))
        ti.xcom_push(key="outcome", value=outcome)
        return branch

    @task(execution_timeout=timedelta(minutes=2))
    def report_success(ti=None) -> dict:
        return retrain.success_summary(ti.xcom_pull(task_ids="choose_outcome", key="outcome"))

    @task(execution_timeout=timedelta(minutes=5))
    def alert_failure(ti=None) -> str:
        outcome = ti.xcom_pull(task_ids="choose_outcome", key="outcome")
        run_id = get_current_context()["run_id"]
        with _runner() as runner:
            sender = AlertSender(runner, SmtpMailer(config.SMTP_CONN_ID), config.alert_recipients())
            mlflow_ui = config.get_variable(config.VAR_MLFLOW_UI, "") or None
            return sender.send_once(retrain.failure_alert(outcome, run_id, mlflow_ui))

    job = start_training()
    job >> wait_for_training(job) >> choose_outcome() >> [report_success(), alert_failure()]


weekly_retrain()
