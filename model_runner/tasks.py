"""Tasks: a name plus its data, its label vocabulary and the metric it is judged by.

The label *set* of a trained model always comes from its data; ``int_labels`` only says how the
published integer encodings of these datasets (TweetEval's 0/1/2 and 0/1/2/3) read as names.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_runner.settings import Settings


@dataclass(frozen=True)
class Task:
    name: str
    data: str
    int_labels: tuple[str, ...]
    metric: str  # primary selection/gate metric: "macro_recall" or "macro_f1"
    # another task whose labelled data first tunes the encoder (see training.warmup); "" = none
    warmup: str = ""


def get_task(name: str, settings: Settings) -> Task:
    tasks = {
        "sentiment": Task(
            "sentiment",
            settings.sentiment_data,
            ("negative", "neutral", "positive"),
            "macro_recall",
            settings.sentiment_warmup_task,
        ),
        "emotion": Task(
            "emotion",
            settings.emotion_data,
            ("anger", "joy", "optimism", "sadness"),
            "macro_f1",
            settings.emotion_warmup_task,
        ),
    }
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks))}")
    task = tasks[name]
    if task.warmup and (task.warmup == name or task.warmup not in tasks):
        raise ValueError(
            f"{name}_warmup_task={task.warmup!r} must name another task "
            f"({', '.join(sorted(tasks))}) or be empty"
        )
    return task


TASK_NAMES = ("sentiment", "emotion")
