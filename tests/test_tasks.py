"""The tasks file: what it declares, what it refuses, and how label maps read."""

from __future__ import annotations

import pytest

from model_runner.settings import Settings
from model_runner.tasks import TaskConfigError, UnknownTask, declared_tasks, get_task, parse_label_map


def test_the_bundled_file_declares_sentiment_then_emotion(tmp_path):
    settings = Settings(home=tmp_path)
    tasks = declared_tasks(settings)
    assert list(tasks) == ["sentiment", "emotion"] == settings.task_list()
    sentiment = tasks["sentiment"]
    assert (sentiment.metric, sentiment.labels, sentiment.schedule) == (
        "macro_recall",
        ("negative", "neutral", "positive"),
        "@weekly",
    )
    assert tasks["emotion"].metric == "macro_f1"
    assert sentiment.read_options() == {
        "label_names": ("negative", "neutral", "positive"),
        "label_map": {},
        "text_column": "text",
        "label_column": "label",
    }


def test_overrides_and_per_run_options_change_a_declared_task(tmp_path):
    settings = Settings(home=tmp_path, task_overrides={"sentiment": {"data": "/data/s.jsonl"}})
    task = get_task("sentiment", settings)
    assert task.data == "/data/s.jsonl"
    run = task.with_data_options(label_map={"0": "Negative", "4": "positive"}, text_column="tweet")
    assert (run.label_map, run.text_column, run.label_column) == (
        {"0": "negative", "4": "positive"},
        "tweet",
        "label",
    )
    assert task.label_map == {}  # the declaration is untouched


@pytest.mark.parametrize(
    "text, problem",
    [
        ('[sentiment]\nmetric = "macro_recall"\n', "data: Field required"),
        ('[sentiment]\ndata = "x"\nmetric = "auc"\n', "metric must be one of"),
        ('[sentiment]\ndata = "x"\ncolour = "red"\n', "colour: Extra inputs are not permitted"),
        ('[sentiment]\ndata = "x"\nwarmup = "sentiment"\n', "must name another task"),
        ('[sentiment]\ndata = "x"\nwarmup = "sarcasm"\n', "must name another task"),
        ('[sentiment]\ndata = "x"\nlabels = ["a", "A"]\n', "labels must be distinct"),
        ('[Sentiment]\ndata = "x"\n', "must be a table named like"),
        ('[sentiment]\ndata = "x"\nlabel_map = { "0" = "" }\n', "both sides must be non-empty"),
        ("", "declares no task"),
        ("[sentiment\n", "tasks file"),
    ],
)
def test_a_broken_tasks_file_is_refused_naming_the_problem(tmp_path, text, problem):
    path = tmp_path / "tasks.toml"
    path.write_text(text)
    settings = Settings(home=tmp_path, tasks_file=path)
    with pytest.raises(TaskConfigError, match=problem):
        declared_tasks(settings)
    with pytest.raises(TaskConfigError):
        settings.task_list()  # the service reads this at start-up: it does not start


def test_unknown_names_are_refused(tmp_path):
    settings = Settings(home=tmp_path)
    with pytest.raises(UnknownTask, match="declared tasks: sentiment, emotion"):
        get_task("sarcasm", settings)
    with pytest.raises(TaskConfigError, match="undeclared task"):
        Settings(home=tmp_path, task_overrides={"sarcasm": {"data": "x"}}).task_list()
    with pytest.raises(TaskConfigError, match="TWEETPULSE_TASKS names undeclared task"):
        Settings(home=tmp_path, tasks="sentiment,sarcasm").task_list()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("0=negative,2=neutral,4=positive", {"0": "negative", "2": "neutral", "4": "positive"}),
        (" POS = Positive , neg=negative ", {"pos": "positive", "neg": "negative"}),
        ({0: "negative", 1: "positive"}, {"0": "negative", "1": "positive"}),
        (None, {}),
        ("", {}),
    ],
)
def test_label_maps_parse_from_the_cli_form_and_from_mappings(raw, expected):
    assert parse_label_map(raw) == expected


@pytest.mark.parametrize("raw", ["0:negative", "=negative", "0=", "0=a,0=b"])
def test_malformed_label_maps_are_refused(raw):
    with pytest.raises(ValueError, match="label map"):
        parse_label_map(raw)
