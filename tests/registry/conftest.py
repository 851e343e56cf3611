"""A real MLflow store (sqlite + local artifacts in a temp folder) and tiny saved classifiers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SENTIMENT = ["negative", "neutral", "positive"]
EMOTION = ["anger", "joy", "optimism", "sadness"]
TEXTS = [
    "I love this phone so much!!!",
    "meh",
    "Worst customer service I have ever had, never again @brand",
    "ok",
    "the update is out today, installing now http://t.co/x",
]


@dataclass(frozen=True)
class Store:
    uri: str
    experiment_id: str
    root: Path


@dataclass(frozen=True)
class Saved:
    path: Path
    model: object  # the in-memory TweetClassifier that was saved, for comparing predictions


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> Store:
    """One sqlite store for all registry tests: creating its schema takes several seconds.

    Tests isolate themselves with a unique registered-model prefix (see ``fresh_registry``).
    A sqlite store without a server puts artifacts under ``./mlruns`` of the working directory unless
    the experiment says otherwise, hence the explicit artifact_location.
    """
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    experiment_id = MlflowClient(uri).create_experiment(
        "registry-tests", artifact_location=(root / "artifacts").as_uri()
    )
    return Store(uri=uri, experiment_id=experiment_id, root=root)


@contextmanager
def use_store(store: Store) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``store`` and restore the previous setting afterwards."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous_uri, previous_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(store.uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_uri)  # None also clears the env var it had set
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


@contextmanager
def active_run(store: Store) -> Iterator[object]:
    """What the training job does: global tracking URI + a parent run."""
    import mlflow

    with use_store(store), mlflow.start_run(experiment_id=store.experiment_id) as run:
        yield run


def new_registry(store: Store):
    from model_runner.registry import ModelRegistry

    return ModelRegistry(store.uri, name_prefix=f"t{uuid.uuid4().hex[:8]}")


def _save(tiny_bert: Path, out: Path, labels: list[str], seed: int, task: str) -> Saved:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from model_runner.modeling.classifier import TweetClassifier
    from model_runner.modeling.heads import build_head

    torch.manual_seed(seed)
    head = build_head("linear", 32, len(labels))
    model = TweetClassifier(
        AutoModel.from_pretrained(tiny_bert),
        AutoTokenizer.from_pretrained(tiny_bert),
        head,
        labels,
        max_length=64,
        meta={"task": task, "adapter": "linear"},
    )
    model.save(out)
    return Saved(path=out, model=model.eval())


@pytest.fixture(scope="session")
def saved_models(tiny_bert, tmp_path_factory) -> dict[str, Saved]:
    """Two different sentiment models (different heads) and one emotion model."""
    root = tmp_path_factory.mktemp("saved")
    return {
        "sentiment_a": _save(tiny_bert, root / "sentiment-a", SENTIMENT, seed=1, task="sentiment"),
        "sentiment_b": _save(tiny_bert, root / "sentiment-b", SENTIMENT, seed=2, task="sentiment"),
        "emotion": _save(tiny_bert, root / "emotion", EMOTION, seed=3, task="emotion"),
    }


@dataclass
class Populated:
    registry: object
    versions: dict[str, object]  # "sentiment_a" -> ModelVersionInfo, ...
    run_id: str


@pytest.fixture(scope="session")
def populated(mlflow_store, saved_models) -> Populated:
    """sentiment v1 (model a), sentiment v2 (model b), emotion v1, logged in one training run.

    Shared by several test modules, so: no test moves its aliases (those build their own registry),
    and only emotion v1 may get extra tags (sentiment tags are compared exactly).
    """
    import mlflow

    registry = new_registry(mlflow_store)
    with active_run(mlflow_store) as run:
        mlflow.log_metric("eval_macro_recall", 0.5)
        versions = {
            key: registry.log_and_register(
                saved_models[key].path,
                task=key.split("_")[0],
                input_example=TEXTS[:3],
                tags={"source": key},
            )
            for key in ("sentiment_a", "sentiment_b", "emotion")
        }
    return Populated(registry=registry, versions=versions, run_id=run.info.run_id)
