"""Load a task's champion from the MLflow registry, as it is served (int8 when that was chosen)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.modeling.classifier import TweetClassifier, verify_files
from model_runner.registry import ModelRegistry, ModelVersionInfo, apply_http_limits
from model_runner.settings import Settings


@dataclass
class LoadedModel:
    model: TweetClassifier
    version: ModelVersionInfo
    folder: Path


def registry_for(settings: Settings) -> ModelRegistry:
    """The registry of ``settings``, with MLflow's HTTP timeout and retries bounded by them."""
    apply_http_limits(settings.mlflow_timeout_s, settings.mlflow_max_retries, settings.mlflow_backoff_factor)
    return ModelRegistry(settings.tracking_uri(), name_prefix=settings.registry_prefix)


def load_champion(
    settings: Settings, task: str, *, serving: bool = True, dst: Path | None = None
) -> LoadedModel:
    """The champion, refused (``UntrustedVersionError``) unless it passed the gate and its files are
    the registered ones; the same checks as the service's reload."""
    registry = registry_for(settings)
    champion = registry.champion(task)
    if champion is None:
        raise NoChampionError(
            f"no champion for task {task!r} in {registry.model_name(task)}; "
            f"run `model-runner train --task {task}` first"
        )
    folder = registry.download_verified(task, champion, dst=dst or Path(tempfile.mkdtemp(prefix="tp-model-")))
    verify_files(folder)
    return LoadedModel(TweetClassifier.load(folder, serving=serving), champion, folder)
