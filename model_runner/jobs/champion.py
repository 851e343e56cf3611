"""Load a task's champion from the MLflow registry, as it is served (int8 when that was chosen)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.modeling.classifier import TweetClassifier
from model_runner.registry import ModelRegistry, ModelVersionInfo
from model_runner.settings import Settings


@dataclass
class LoadedModel:
    model: TweetClassifier
    version: ModelVersionInfo
    folder: Path


def registry_for(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.tracking_uri(), name_prefix=settings.registry_prefix)


def load_champion(
    settings: Settings, task: str, *, serving: bool = True, dst: Path | None = None
) -> LoadedModel:
    registry = registry_for(settings)
    champion = registry.champion(task)
    if champion is None:
        raise NoChampionError(
            f"no champion for task {task!r} in {registry.model_name(task)}; "
            f"run `model-runner train --task {task}` first"
        )
    folder = registry.download(
        task, version=champion.version, alias=None, dst=dst or Path(tempfile.mkdtemp(prefix="tp-model-"))
    )
    return LoadedModel(TweetClassifier.load(folder, serving=serving), champion, folder)
