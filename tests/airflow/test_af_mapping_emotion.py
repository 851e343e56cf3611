"""Every task with a champion is checked and retrained, emotion included: the DAGs map over the tasks the
ModelRunner declares (GET /tasks) that have a champion, not over a fixed list. The test gives emotion a
champion and takes it away again, so the other tests see the service as they expect."""

from __future__ import annotations

from datetime import UTC, datetime

from tweetpulse_dags import regression, retrain
from tweetpulse_dags.runner_api import ModelRunner
from tweetpulse_dags.runner_client import RunnerConfig

from tests.airflow.conftest import TOKEN, fast, states, xcom


def test_regression_check_maps_over_every_task_with_a_champion_emotion_included(
    dagbag, runner, mailbox, variables
):
    client = ModelRunner(RunnerConfig(runner.url, token=TOKEN))
    assert regression.targets(client) == ["sentiment"]  # emotion has no champion yet
    emotion = runner.fixture("train", "--task", "emotion")
    assert emotion["promoted"] is True
    try:
        assert regression.targets(client) == ["sentiment", "emotion"]
        assert retrain.targets(client) == ["sentiment", "emotion"]

        run = fast(dagbag.get_dag("regression_check")).test(logical_date=datetime(2026, 5, 1, tzinfo=UTC))

        assert xcom(run, "check_targets") == ["sentiment", "emotion"]
        mapped = {k: v for k, v in states(run).items() if k.startswith("check.")}
        assert mapped == {
            f"check.{name}[{i}]": "success"
            for name in ("check_registry", "check_live_data", "send_alerts")
            for i in (0, 1)
        }
        assert [xcom(run, "check.send_alerts", map_index=i)["task"] for i in (0, 1)] == [
            "sentiment",
            "emotion",
        ]
        # each map index checked its own task: no tweet was ever classified for emotion
        assert xcom(run, "check.check_live_data", map_index=1)["drift"]["live_tweets"] == 0
        assert str(run.state) == "success" and mailbox.messages == []
    finally:
        runner.fixture("clear-champion", "emotion")
        assert regression.targets(client) == ["sentiment"]
        client.close()
