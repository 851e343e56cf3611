"""The DAG folder parses cleanly and every DAG follows the house rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

DAG_IDS = {"weekly_retrain", "regression_check", "tweet_inspector"}


def test_the_three_dags_load_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_every_dag_is_documented_tagged_and_does_not_catch_up(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.doc_md and len(dag.doc_md) > 200
    assert "tweetpulse" in dag.tags
    assert dag.catchup is False
    # weekly_retrain's overlapping runs share one training job (the 409 names it), so they may overlap
    assert dag.max_active_runs == (16 if dag_id == "weekly_retrain" else 1)


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_every_task_retries_with_a_delay_and_has_a_timeout(dagbag, dag_id):
    for task in dagbag.get_dag(dag_id).tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay.total_seconds() > 0, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout.total_seconds() <= 3600, task.task_id


def test_schedules(dagbag):
    schedules = {dag_id: dagbag.get_dag(dag_id).schedule for dag_id in DAG_IDS - {"regression_check"}}
    assert schedules == {"weekly_retrain": "@weekly", "tweet_inspector": "@hourly"}


def test_regression_check_runs_daily_or_when_the_champion_asset_changes(dagbag):
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

    schedule = dagbag.get_dag("regression_check").schedule
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert isinstance(schedule.timetable, CronTriggerTimetable)
    assert schedule.timetable.expression == "0 0 * * *"
    assert schedule.asset_condition == Asset(
        name="tweetpulse_champion", uri="tweetpulse://model-runner/champion"
    )
    # the asset's producer: only weekly_retrain's publish_champion (which runs only on a promotion)
    producers = [
        (dag_id, t.task_id)
        for dag_id in DAG_IDS
        for t in dagbag.get_dag(dag_id).tasks
        if any(getattr(o, "name", None) == "tweetpulse_champion" for o in t.outlets)
    ]
    assert producers == [("weekly_retrain", "retrain.publish_champion")]


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_every_dag_mails_once_per_incident_on_failure(dagbag, dag_id):
    from airflow.sdk import BaseNotifier
    from tweetpulse_dags.notifiers import IncidentCloser, IncidentNotifier

    dag = dagbag.get_dag(dag_id)
    assert isinstance(dag.on_failure_callback, IncidentNotifier)
    assert isinstance(dag.on_failure_callback, BaseNotifier)
    assert isinstance(dag.on_success_callback, IncidentCloser)


def test_the_training_wait_defers_to_the_triggerer(dagbag):
    from airflow.sdk import BaseSensorOperator
    from tweetpulse_dags.operators import WaitForTrainingOperator
    from tweetpulse_dags.triggers import TrainingJobTrigger

    dag = dagbag.get_dag("weekly_retrain")
    assert not any(isinstance(t, BaseSensorOperator) for t in dag.tasks)  # no poke/reschedule loop
    wait = dag.get_task("retrain.wait_for_training")
    assert isinstance(wait, WaitForTrainingOperator) and callable(wait.execute_complete)
    # the classpath the triggerer imports (the DAGs folder on its PYTHONPATH) names this class
    trigger = TrainingJobTrigger(job_id="j", deadline=1.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is TrainingJobTrigger
    assert TrainingJobTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert "token" not in str(kwargs).lower() and "password" not in str(kwargs).lower()


@pytest.mark.parametrize("dag_id, group", [("weekly_retrain", "retrain"), ("regression_check", "check")])
def test_the_work_is_mapped_over_the_tasks_the_service_declares(dagbag, dag_id, group):
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    dag = dagbag.get_dag(dag_id)
    assert isinstance(dag.task_group_dict[group], MappedTaskGroup)
    assert dag.params.get_param("task").value == "all"


def test_the_helper_package_is_not_parsed_as_dag_files(dagbag):
    parsed = {Path(path).name for path in dagbag.file_last_changed}
    assert parsed == {"weekly_retrain.py", "regression_check.py", "tweet_inspector.py"}


@pytest.mark.parametrize(
    "dag_id, conf",
    [
        ("weekly_retrain", {"adapters": ["transformer"]}),
        ("weekly_retrain", {"folds": 1}),
        ("weekly_retrain", {"timeout_minutes": -5}),
        ("regression_check", {"macro_recall_drop": 3}),
        ("tweet_inspector", {"source": "carrier-pigeon"}),
    ],
)
def test_invalid_params_are_refused(dagbag, dag_id, conf):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dagbag.get_dag(dag_id).params)
    with pytest.raises(ParamValidationError):
        params.update(conf)
        params.validate()


def test_valid_params_pass(dagbag):
    params = copy.deepcopy(dagbag.get_dag("weekly_retrain").params)
    params.update({"adapters": ["linear", "mlp"], "folds": 3, "dataset": "/data/x.jsonl"})
    assert params.validate()["folds"] == 3


def test_task_params_and_the_retrain_schedule_come_from_the_tasks_file(
    dagbag, airflow_db, tmp_path, monkeypatch
):
    import tomllib

    from airflow.dag_processing.dagbag import DagBag

    repo_tasks = tomllib.loads((Path(__file__).parents[2] / "model_runner" / "tasks.toml").read_text())
    for dag_id in ("weekly_retrain", "regression_check"):
        assert dagbag.get_dag(dag_id).params.get_param("task").schema["enum"] == ["all", *repo_tasks]

    # a third task with its own schedule, declared first: no DAG code changes
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[stance]\ndata = "x.csv"\nschedule = "0 3 * * 1"\n\n[sentiment]\ndata = "y"\nschedule = "@weekly"\n'
    )
    monkeypatch.setenv("TWEETPULSE_TASKS_FILE", str(tasks))
    bag = DagBag(dag_folder=str(Path(__file__).parents[2] / "airflow" / "dags"))
    assert bag.import_errors == {}
    retrain = bag.get_dag("weekly_retrain")
    assert retrain.schedule == "0 3 * * 1"
    assert retrain.params.get_param("task").value == "all"
    assert retrain.params.get_param("task").schema["enum"] == ["all", "stance", "sentiment"]
    assert {"label_map", "text_column", "label_column"} <= set(retrain.params)

    monkeypatch.setenv("TWEETPULSE_TASKS_FILE", str(tmp_path / "missing.toml"))
    broken = DagBag(dag_folder=str(Path(__file__).parents[2] / "airflow" / "dags"))
    assert any("missing.toml" in str(err) for err in broken.import_errors.values())
