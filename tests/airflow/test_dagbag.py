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
    schedules = {dag_id: dagbag.get_dag(dag_id).schedule for dag_id in DAG_IDS}
    assert schedules == {
        "weekly_retrain": "@weekly",
        "regression_check": "@daily",
        "tweet_inspector": "@hourly",
    }


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
        assert dagbag.get_dag(dag_id).params.get_param("task").schema["enum"] == list(repo_tasks)

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
    assert retrain.params.get_param("task").value == "stance"
    assert retrain.params.get_param("task").schema["enum"] == ["stance", "sentiment"]
    assert {"label_map", "text_column", "label_column"} <= set(retrain.params)

    monkeypatch.setenv("TWEETPULSE_TASKS_FILE", str(tmp_path / "missing.toml"))
    broken = DagBag(dag_folder=str(Path(__file__).parents[2] / "airflow" / "dags"))
    assert any("missing.toml" in str(err) for err in broken.import_errors.values())
