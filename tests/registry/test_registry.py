"""ModelRegistry against a real sqlite MLflow store with local artifacts."""

from __future__ import annotations

import hashlib
import json

import mlflow
import numpy as np
import pytest

from model_runner.modeling.classifier import TweetClassifier
from model_runner.registry import MANIFEST_TAG, ModelNotFoundError, ModelRegistry
from tests.registry.conftest import TEXTS, active_run, new_registry


def test_versions_are_numbered_per_task_and_tagged(populated, saved_models):
    reg, v = populated.registry, populated.versions
    assert reg.model_name("sentiment").endswith("-sentiment")
    assert (v["sentiment_a"].version, v["sentiment_b"].version, v["emotion"].version) == ("1", "2", "1")
    assert v["sentiment_a"].name == v["sentiment_b"].name == reg.model_name("sentiment")
    assert v["emotion"].name == reg.model_name("emotion")
    assert v["sentiment_b"].uri == f"models:/{reg.model_name('sentiment')}/2"
    assert all(info.run_id == populated.run_id for info in v.values())
    assert v["sentiment_a"].created_at > 1_600_000_000_000  # milliseconds
    # tags as stored in MLflow, not just as returned
    stored = mlflow.MlflowClient(reg.tracking_uri).get_model_version(reg.model_name("sentiment"), "2")
    assert stored.tags == {
        "task": "sentiment",
        "source": "sentiment_b",
        MANIFEST_TAG: hashlib.sha256(
            (saved_models["sentiment_b"].path / "checksums.json").read_bytes()
        ).hexdigest(),
    }
    assert stored.status == "READY"


def test_versions_newest_first_with_limit(populated):
    reg = populated.registry
    assert [m.version for m in reg.versions("sentiment")] == ["2", "1"]
    assert [m.version for m in reg.versions("sentiment", limit=1)] == ["2"]
    assert [m.version for m in reg.versions("emotion")] == ["1"]
    assert reg.versions("nosuchtask") == []


def test_download_gives_the_same_classifier(populated, saved_models, tmp_path):
    reg = populated.registry
    folder = reg.download("sentiment", version="1", alias=None, dst=tmp_path / "v1")
    assert (folder / "tweetpulse.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "head.safetensors").is_file()
    assert folder.is_relative_to(tmp_path / "v1")
    loaded = TweetClassifier.load(folder)
    assert loaded.labels == ["negative", "neutral", "positive"]
    expected_a = saved_models["sentiment_a"].model.predict_proba(TEXTS)
    expected_b = saved_models["sentiment_b"].model.predict_proba(TEXTS)
    got = loaded.predict_proba(TEXTS)
    np.testing.assert_allclose(got, expected_a, atol=1e-6)
    assert not np.allclose(got, expected_b, atol=1e-6), "version 1 must be model a, not b"
    # the emotion model keeps its own label set
    emotion = TweetClassifier.load(reg.download("emotion", version="1", dst=tmp_path / "e1"))
    assert emotion.labels == ["anger", "joy", "optimism", "sadness"]
    assert json.loads((folder / "tweetpulse.json").read_text())["task"] == "sentiment"


def test_download_without_champion_or_version_fails_clearly(populated, tmp_path):
    reg = populated.registry
    with pytest.raises(ModelNotFoundError):
        reg.download("sentiment", dst=tmp_path / "x")  # alias champion: never promoted here
    with pytest.raises(ModelNotFoundError):
        reg.download("sentiment", version="99", dst=tmp_path / "y")
    with pytest.raises(ValueError):
        reg.download("sentiment", version=None, alias=None)


def test_champion_lifecycle_and_tasks_are_separate(mlflow_store, saved_models, tmp_path):
    reg = new_registry(mlflow_store)
    assert reg.champion("sentiment") is None  # no registered model at all
    with active_run(mlflow_store):
        v1 = reg.log_and_register(saved_models["sentiment_a"].path, task="sentiment", input_example=TEXTS[:2])
        assert reg.champion("sentiment") is None  # model exists, alias does not
        reg.promote("sentiment", v1.version)
        v2 = reg.log_and_register(saved_models["sentiment_b"].path, task="sentiment", input_example=TEXTS[:2])
        e1 = reg.log_and_register(saved_models["emotion"].path, task="emotion", input_example=TEXTS[:2])

    champ = reg.champion("sentiment")
    assert champ is not None and champ.version == v1.version and champ.aliases == [ModelRegistry.CHAMPION]
    assert reg.champion("emotion") is None  # promoting sentiment does not touch emotion
    reg.promote("sentiment", v2.version)
    assert reg.champion("sentiment").version == "2"
    assert [(m.version, m.aliases) for m in reg.versions("sentiment")] == [("2", ["champion"]), ("1", [])]
    reg.promote("emotion", e1.version)
    assert reg.champion("emotion").version == "1" and reg.champion("sentiment").version == "2"
    # the champion alias is what download follows by default
    folder = reg.download("sentiment", dst=tmp_path / "champ")
    np.testing.assert_allclose(
        TweetClassifier.load(folder).predict_proba(TEXTS[:2]),
        saved_models["sentiment_b"].model.predict_proba(TEXTS[:2]),
        atol=1e-6,
    )
    with pytest.raises(ModelNotFoundError):
        reg.promote("sentiment", "7")
    assert reg.champion("sentiment").version == "2"  # a failed promote leaves the alias alone


def test_set_tags_and_run_metrics(populated):
    reg = populated.registry
    reg.set_tags("emotion", "1", {"quantized": "true", "eval.macro_recall": 0.61})
    tags = reg.versions("emotion")[0].tags
    assert tags["quantized"] == "true" and tags["eval.macro_recall"] == "0.61" and tags["task"] == "emotion"
    with pytest.raises(ModelNotFoundError):
        reg.set_tags("emotion", "5", {"x": "y"})
    assert reg.run_metrics(populated.run_id) == {"eval_macro_recall": 0.5}


def test_log_and_register_needs_an_active_run_on_the_same_store(mlflow_store, saved_models, tmp_path):
    reg = new_registry(mlflow_store)
    with pytest.raises(RuntimeError, match="active MLflow run"):
        reg.log_and_register(saved_models["sentiment_a"].path, task="sentiment", input_example=["x"])
    elsewhere = ModelRegistry(f"sqlite:///{tmp_path}/other.db")
    with active_run(mlflow_store), pytest.raises(RuntimeError, match="logs to"):
        elsewhere.log_and_register(saved_models["sentiment_a"].path, task="sentiment", input_example=["x"])
    assert not (tmp_path / "other.db").exists()  # refused before touching any store
    assert reg.versions("sentiment") == []


def test_reads_never_use_global_mlflow_settings(populated, monkeypatch, tmp_path):
    # Point the process-wide settings at another store; the registry must keep using its own.
    wrong = tmp_path / "wrong.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{wrong}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{wrong}")
    reg = ModelRegistry(populated.registry.tracking_uri, name_prefix=populated.registry.name_prefix)
    assert [m.version for m in reg.versions("sentiment")] == ["2", "1"]
    assert reg.champion("sentiment") is None
    assert (reg.download("emotion", version="1", dst=tmp_path / "d") / "tweetpulse.json").is_file()
    assert not wrong.exists()


def test_invalid_task_names_are_refused(populated):
    with pytest.raises(ValueError):
        populated.registry.model_name("x' OR name LIKE '%")


def test_the_logged_model_has_the_evaluation_metrics(mlflow_store, saved_models, tmp_path):
    """What a training run does: the tracker logs the held-out evaluation, then the registry logs and
    registers the model; the LoggedModel (MLflow's Models tab) carries those metrics."""
    from model_runner.evaluation import evaluate
    from model_runner.training.tracking import RunTracker

    registry = new_registry(mlflow_store)
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    report = evaluate(y_true, proba, ["negative", "neutral", "positive"], tmp_path / "report", n_boot=50)
    with active_run(mlflow_store) as run:
        tracker = RunTracker(run, "test")
        tracker.log_evaluation(report, tmp_path / "report")
        info = registry.log_and_register(
            saved_models["sentiment_a"].path, task="sentiment", input_example=TEXTS
        )

    client = mlflow.MlflowClient(mlflow_store.uri)
    (output,) = client.get_run(run.info.run_id).outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert client.get_model_version(info.name, info.version).source == f"models:/{model.model_id}"
    linked = {m.key: m.value for m in model.metrics}
    for key in ("macro_recall", "macro_f1", "accuracy", "ece", "recall_neutral", "f1_positive"):
        assert linked[key] == pytest.approx(client.get_run(run.info.run_id).data.metrics[key]), key
    assert linked["macro_recall"] == pytest.approx(report.metrics["macro_recall"])
    # the evaluation's files, the F1-by-threshold table among them, are the run's artifacts
    files = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/f1_by_threshold.png",
        "evaluation/f1_by_threshold.csv",
        "evaluation/pr_curves.png",
    } <= files
