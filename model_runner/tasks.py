"""Tasks are data: each is declared in a TOML file (the bundled ``tasks.toml`` or ``tasks_file``).

A task is a name plus its default data, the metric it is judged by, its classes and how the data's
raw labels and columns read. Every entry point (CLI, ``POST /train``, ``GET /tasks``, the DAGs'
Params) takes the list from the file, so adding a task is adding a table there, never code.

The label *set* of a trained model comes from its data: ``labels`` only fixes the order of the
classes and drops rows with other labels; ``label_map`` names raw values (``0``/``2``/``4``,
``pos``). Integer labels that neither the map nor the data's own mapping file names are an error.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model_runner.errors import TweetpulseError
from model_runner.settings import Settings

METRICS = ("macro_recall", "macro_f1", "accuracy")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_COLUMN_RE = re.compile(r"^[^\x00-\x1f]{1,200}$")


class TaskConfigError(TweetpulseError, ValueError):
    """The tasks file (or an override) is not a valid declaration."""

    status, type = 500, "task_config"


class UnknownTask(TweetpulseError, ValueError):
    status, type = 422, "unknown_task"


class TaskSpec(BaseModel):
    """One table of the tasks file, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(min_length=1, description="Default data: a file, a folder or a Hub dataset id.")
    metric: str = Field("macro_recall", description="Metric CV selects by and the gate compares.")
    labels: tuple[str, ...] = Field((), description="The classes in order; empty = whatever the data holds.")
    label_map: dict[str, str] = Field(default_factory=dict, description="Raw label -> class name.")
    text_column: str = Field("text", pattern=_COLUMN_RE.pattern)
    label_column: str = Field("label", pattern=_COLUMN_RE.pattern)
    warmup: str = Field("", description="Another task whose data first tunes the encoder; '' = none.")
    schedule: str = Field("", description="Airflow schedule of the task's retrain; '' = on demand.")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(v.strip().lower() for v in value)
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("labels must be distinct, non-empty names")
        return names

    @field_validator("label_map")
    @classmethod
    def _label_map(cls, value: dict[str, str]) -> dict[str, str]:
        return parse_label_map(value)


@dataclass(frozen=True)
class Task:
    name: str
    data: str
    metric: str  # primary selection/gate metric: "macro_recall" or "macro_f1"
    labels: tuple[str, ...] = ()
    label_map: Mapping[str, str] = field(default_factory=dict)
    text_column: str = "text"
    label_column: str = "label"
    # another task whose labelled data first tunes the encoder (see training.warmup); "" = none
    warmup: str = ""
    schedule: str = ""

    def with_data_options(
        self,
        *,
        data: str | None = None,
        label_map: Mapping[str, str] | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
    ) -> Task:
        """This task read differently for one run (``--label-map``, a ``POST /train`` field)."""
        changes: dict[str, Any] = {}
        if data:
            changes["data"] = data
        if label_map:
            changes["label_map"] = parse_label_map(label_map)
        if text_column:
            changes["text_column"] = text_column
        if label_column:
            changes["label_column"] = label_column
        return replace(self, **changes)

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments of ``prepare_dataset``: how this task's data is read."""
        return {
            "label_names": self.labels or None,
            "label_map": dict(self.label_map),
            "text_column": self.text_column,
            "label_column": self.label_column,
        }


def parse_label_map(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``"0=negative,2=neutral,4=positive"`` or a mapping -> ``{"0": "negative", ...}`` (names lower-case).

    Keys are raw label values as strings (integers written plainly: ``4``, not ``4.0``)."""
    if value is None:
        return {}
    if isinstance(value, str):
        pairs: list[tuple[str, str]] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            raw, sep, name = part.partition("=")
            if not sep:
                raise ValueError(f"label map entry {part!r} is not RAW=NAME (e.g. 0=negative)")
            pairs.append((raw, name))
    else:
        pairs = [(str(k), str(v)) for k, v in value.items()]
    out: dict[str, str] = {}
    for raw, name in pairs:
        raw, name = raw.strip(), name.strip().lower()
        if not raw or not name:
            raise ValueError(f"label map entry {raw!r}={name!r}: both sides must be non-empty")
        if raw.lower() in out:
            raise ValueError(f"label map names raw label {raw!r} twice")
        out[raw.lower()] = name
    return out


def _bundled() -> str:
    return resources.files("model_runner").joinpath("tasks.toml").read_text(encoding="utf-8")


def _load_specs(settings: Settings) -> dict[str, TaskSpec]:
    where = str(settings.tasks_file) if settings.tasks_file else "model_runner/tasks.toml"
    try:
        text = (
            Path(settings.tasks_file).expanduser().read_text(encoding="utf-8")
            if settings.tasks_file
            else _bundled()
        )
        tables = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaskConfigError(f"tasks file {where}: {exc}") from exc
    unknown_overrides = sorted(set(settings.task_overrides) - set(tables))
    if unknown_overrides:
        raise TaskConfigError(
            f"task_overrides names undeclared task(s) {', '.join(unknown_overrides)}; "
            f"{where} declares {', '.join(tables) or 'none'}"
        )
    specs: dict[str, TaskSpec] = {}
    for name, table in tables.items():
        if not _NAME_RE.match(name) or not isinstance(table, dict):
            raise TaskConfigError(f"tasks file {where}: [{name}] must be a table named like 'sentiment'")
        try:
            specs[name] = TaskSpec(**{**table, **settings.task_overrides.get(name, {})})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise TaskConfigError(f"tasks file {where}, task {name}: {problems}") from None
    if not specs:
        raise TaskConfigError(f"tasks file {where} declares no task")
    for name, spec in specs.items():
        if spec.warmup and (spec.warmup == name or spec.warmup not in specs):
            raise TaskConfigError(
                f"task {name}: warmup={spec.warmup!r} must name another task ({', '.join(specs)}) or be empty"
            )
    return specs


def declared_tasks(settings: Settings) -> dict[str, Task]:
    """Every declared task, in file order."""
    return {
        name: Task(
            name=name,
            data=spec.data,
            metric=spec.metric,
            labels=spec.labels,
            label_map=dict(spec.label_map),
            text_column=spec.text_column,
            label_column=spec.label_column,
            warmup=spec.warmup,
            schedule=spec.schedule,
        )
        for name, spec in _load_specs(settings).items()
    }


def get_task(name: str, settings: Settings) -> Task:
    tasks = declared_tasks(settings)
    if name not in tasks:
        raise UnknownTask(f"unknown task {name!r}; declared tasks: {', '.join(tasks)}")
    return tasks[name]


def default_task(settings: Settings) -> str:
    """The first declared task: what commands and routes use when no task is named."""
    return next(iter(declared_tasks(settings)))
