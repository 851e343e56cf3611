"""End-to-end training runs on a tiny encoder: MLflow, registry, gate, cancellation, CLI."""

import json

import mlflow
import numpy as np
import pytest

from model_runner.jobs.champion import load_champion, registry_for
from model_runner.tasks import get_task
from model_runner.training import run as run_module
from model_runner.training.run import run_training

from .conftest import EMOTION_WORDS, make_rows, write_emotion_data, write_jsonl


def test_first_run_registers_and_promotes_with_a_full_mlflow_record(components, settings, dataset):
    stages = []
    outcome = run_training(
        components,
        get_task("sentiment", settings),
        data=str(dataset),
        progress=lambda s, p: stages.append((s, p)),
    )
    assert outcome.promoted and outcome.model_version == "1"
    assert "first model" in outcome.gate["reason"].lower() or outcome.gate["champion_score"] is None
    progress = [p for _, p in stages]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)

    client = mlflow.MlflowClient(settings.tracking_uri())
    parent = client.get_run(outcome.run_id)
    assert parent.data.params["data.hash"] == outcome.data["dataset_hash"]
    assert {"encoder.id", "encoder.revision", "seed", "code_version", "best.candidate"} <= set(
        parent.data.params
    )
    assert parent.data.metrics["macro_recall"] == pytest.approx(outcome.metrics["macro_recall"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{outcome.run_id}'"
    )
    assert len(children) == len(outcome.cv) == 3  # 2 linear + 1 mlp candidates
    assert all("cv_macro_recall_mean" in c.data.metrics for c in children)
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id, "evaluation")}
    assert {
        "evaluation/confusion_matrix.png",
        "evaluation/report.json",
        "evaluation/pr_curves.png",
        "evaluation/reliability.png",
    } <= artifacts

    registry = registry_for(settings)
    champion = registry.champion("sentiment")
    assert champion is not None and champion.version == "1"
    assert champion.tags["gate.decision"] == "promoted"

    loaded = load_champion(settings, "sentiment")
    assert loaded.model.labels == ["negative", "neutral", "positive"]
    assert loaded.model.meta["serving"] in {"int8", "fp32"}


def test_cv_never_sees_the_evaluation_split(components, settings, dataset, monkeypatch):
    seen = {}
    real = run_module.run_cv

    def spy(candidates, data, **kwargs):
        seen["texts"] = list(data.texts)
        seen["n"] = len(data.y)
        return real(candidates, data, **kwargs)

    monkeypatch.setattr(run_module, "run_cv", spy)
    outcome = run_training(
        components, get_task("sentiment", settings), data=str(dataset), adapters=["linear"]
    )
    eval_texts = {
        json.loads(line)["text"].replace("@user", "@user")
        for line in (dataset / "validation.jsonl").read_text().splitlines()
    }
    assert seen["n"] == outcome.data["rows_out"]["train"]
    assert not set(seen["texts"]) & eval_texts
    assert outcome.data["rows_out"]["eval"] == len(eval_texts)


def test_gate_promotes_an_equal_model_and_refuses_a_worse_one(components, settings, dataset, tmp_path):
    task = get_task("sentiment", settings)
    first = run_training(components, task, data=str(dataset), adapters=["linear"])
    again = run_training(components, task, data=str(dataset), adapters=["linear"])
    assert again.promoted and again.gate["champion_version"] == first.model_version

    noisy = tmp_path / "noisy"
    noisy.mkdir()
    write_jsonl(noisy / "train.jsonl", make_rows(40, seed=1, shuffle_labels=True))
    (noisy / "validation.jsonl").write_text((dataset / "validation.jsonl").read_text())
    worse = run_training(components, task, data=str(noisy), adapters=["linear"])
    assert not worse.promoted
    assert worse.metrics["macro_recall"] < again.metrics["macro_recall"] - settings.gate_tolerance
    registry = registry_for(settings)
    assert registry.champion("sentiment").version == again.model_version
    tags = {v.version: v.tags for v in registry.versions("sentiment")}
    assert tags[worse.model_version]["gate.decision"] == "rejected"
    assert float(tags[worse.model_version]["gate.champion_score"]) == pytest.approx(
        again.metrics["macro_recall"], abs=1e-6
    )


def test_interrupted_or_failed_training_leaves_the_champion_alias(components, settings, dataset, monkeypatch):
    task = get_task("sentiment", settings)
    first = run_training(components, task, data=str(dataset), adapters=["linear"])

    stop_at_gate = {"stop": False}

    def progress(stage, _):
        if stage == "gate":
            stop_at_gate["stop"] = True

    with pytest.raises(InterruptedError):
        run_training(
            components,
            task,
            data=str(dataset),
            adapters=["linear"],
            progress=progress,
            should_stop=lambda: stop_at_gate["stop"],
        )

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "check_quantization", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run_training(components, task, data=str(dataset), adapters=["linear"])
    assert registry_for(settings).champion("sentiment").version == first.model_version


def test_train_predict_evaluate_cli(settings, dataset, tmp_path, monkeypatch, capsys):
    from model_runner import cli
    from model_runner.settings import get_settings

    for key, value in {
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TWEETPULSE_HOME": str(settings.home),
        "TWEETPULSE_ENCODER_ID": settings.encoder_id,
        "TWEETPULSE_ENCODER_MAX_LENGTH": "32",
        "TWEETPULSE_CV_FOLDS": "2",
        "TWEETPULSE_CV_WORKERS": "1",
        "TWEETPULSE_BOOTSTRAP_SAMPLES": "200",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        assert (
            cli.main(
                [
                    "predict",
                    "--input",
                    str(dataset / "validation.jsonl"),
                    "--output",
                    str(tmp_path / "o.jsonl"),
                ]
            )
            == 2
        )
        assert "no champion" in capsys.readouterr().err

        assert cli.main(["train", "--data", str(dataset), "--adapters", "linear"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["promoted"] is True and 0 <= summary["macro_recall"] <= 1

        inp = tmp_path / "in.txt"
        inp.write_text("i love this phone\ni hate this train\nmeeting on tuesday\n")
        assert cli.main(["predict", "--input", str(inp), "--output", str(tmp_path / "out.jsonl")]) == 0
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert len(rows) == 3
        assert all(set(r["scores"]) == {"negative", "neutral", "positive"} for r in rows)
        assert all(r["label"] == max(r["scores"], key=r["scores"].get) for r in rows)
        assert all(np.isclose(sum(r["scores"].values()), 1.0, atol=1e-4) for r in rows)

        assert cli.main(["evaluate", "--data", str(dataset / "validation.jsonl")]) == 0
        metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert metrics["n"] == 45 and metrics["model"].endswith("/1")
    finally:
        get_settings.cache_clear()


def test_emotion_task_trains_with_four_classes_and_its_own_champion(components, settings, dataset, tmp_path):
    folder = write_emotion_data(tmp_path / "emotion", 20, 6)
    run_training(components, get_task("sentiment", settings), data=str(dataset), adapters=["linear"])
    outcome = run_training(components, get_task("emotion", settings), data=str(folder), adapters=["linear"])
    assert outcome.promoted and outcome.metric == "macro_f1"
    assert set(outcome.metrics["per_class"]) == set(EMOTION_WORDS)
    registry = registry_for(settings)
    assert registry.champion("emotion").name == "tweetpulse-emotion"
    assert registry.champion("sentiment").name == "tweetpulse-sentiment"
    assert load_champion(settings, "emotion").model.labels == sorted(EMOTION_WORDS)
