"""Load a task's champion from the MLflow registry, as the service serves it (``load_for_serving``
with the ``serving_runtime`` setting: measured at load for ``auto``, else the runtime it names)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from model_runner.errors import NoChampionError
from model_runner.modeling.classifier import TweetClassifier, verify_files
from model_runner.modeling.serving import RuntimeChoice, load_for_serving
from model_runner.registry import ModelRegistry, ModelVersionInfo
from model_runner.settings import Settings
from model_runner.wiring import Components


@dataclass
class LoadedModel:
    model: TweetClassifier
    version: ModelVersionInfo
    folder: Path
    choice: RuntimeChoice | None = None  # how it is served; None for the plain fp32 model (serving=False)


def registry_for(settings: Settings) -> ModelRegistry:
    """The registry of ``settings`` for callers that hold settings only (built by ``Components``)."""
    return Components(settings).registry


def load_champion(
    settings: Settings, task: str, *, serving: bool = True, dst: Path | None = None
) -> LoadedModel:
    """The champion, refused (``UntrustedVersionError``) unless it passed the gate and its files are
    the registered ones; the same checks as the service's reload. ``serving``: loaded as the service
    serves it (same runtime, same answers); ``False``: the fp32 torch model as saved."""
    registry = registry_for(settings)
    champion = registry.champion(task)
    if champion is None:
        raise NoChampionError(
            f"no champion for task {task!r} in {registry.model_name(task)}; "
            f"run `model-runner train --task {task}` first"
        )
    folder = registry.download_verified(task, champion, dst=dst or Path(tempfile.mkdtemp(prefix="tp-model-")))
    verify_files(folder)
    if not serving:
        return LoadedModel(TweetClassifier.load(folder), champion, folder)
    model, choice = load_for_serving(
        folder,
        runtime=settings.serving_runtime,
        tag=f"{champion.name}/{champion.version}",
        probe_texts=settings.runtime_probe_texts,
        min_agreement=settings.quant_min_agreement,
        max_drop=settings.quant_max_drop,
    )
    return LoadedModel(model, champion, folder, choice)
