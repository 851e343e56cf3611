"""The run tracker: every MLflow name a training run writes, read back from the tracking store."""

import json

import mlflow
import numpy as np
import pytest
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

from model_runner.data import DataSummary
from model_runner.evaluation import EvalReport
from model_runner.modeling.quantize import QuantizationReport
from model_runner.registry import decide
from model_runner.settings import Settings
from model_runner.tasks import Task
from model_runner.training.cv import CandidateResult, FoldResult
from model_runner.training.folds import Split
from model_runner.training.plan import Plan
from model_runner.training.search_space import Candidate
from model_runner.training.tracking import RunTracker, dataset_source
from model_runner.training.warmup import Warmup
from model_runner.wiring import Components


def _split() -> Split:
    summary = DataSummary(
        source="data/",
        rows_in=12,
        rows_out={"train": 8, "eval": 4},
        dropped={},
        conflicts=0,
        conflict_examples=[],
        class_balance={"train": {"a": 4, "b": 4}},
        labels=["a", "b"],
        dataset_hash="h123",
        eval_source="validation",
    )
    texts = [f"t{i}" for i in range(4)]
    y = np.array([0, 1, 0, 1])
    return Split("data/", summary, ["a", "b"], texts, y, texts, y)


def _result(candidate: Candidate, scores: list[float]) -> CandidateResult:
    folds = tuple(
        FoldResult(candidate, i, {"macro_recall": s, "macro_f1": s, "accuracy": s}, 1.0)
        for i, s in enumerate(scores)
    )
    return CandidateResult(candidate, folds)


def test_the_tracker_writes_the_run_record(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    task = Task("sentiment", "data/", ("a", "b"), "macro_recall")
    low, high = Candidate.of("linear", C=0.1), Candidate.of("linear", C=1.0)
    plan = Plan(task, (low, high), 2, 1, "macro_recall", 13, "enc", "rev1")
    results = [_result(low, [0.5, 0.6]), _result(high, [0.8, 0.9])]
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "report.json").write_text("{}")
    report = EvalReport(
        {"macro_recall": 0.75, "accuracy": 0.8, "per_class": {"a": {"recall": 0.5, "f1": 0.6}}}
    )
    quant = QuantizationReport("int8", "dynamic", 0.75, 0.74, 0.01, 0.99, 0.02, 0.97, "ok", 100.0, 200.0)
    gate = decide(0.75, None, tolerance=0.01, metric="macro_recall")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # the split's source, a local folder

    with RunTracker.start(Components(settings), "sentiment") as tracker:
        tracker.log_plan(plan, _split())
        tracker.log_warmup(Warmup("emotion", tmp_path, "w1", 40, 3, 1.0))
        tracker.warmup_skipped("x" * 600)
        table = tracker.log_cv(results, results[1], "macro_recall")
        tracker.log_fit({"epochs": 4})
        tracker.log_evaluation(report, report_dir)
        tracker.log_quantization(quant)
        tracker.log_decision(gate, "7")

    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.get_run(tracker.run_id)
    assert run.info.run_name == "train-sentiment"
    assert run.data.tags["task"] == "sentiment"
    version = run.data.tags["tweetpulse.code_version"]
    params = run.data.params
    assert {k: params[k] for k in ("task", "data.source", "data.hash", "encoder.id", "encoder.revision")} == {
        "task": "sentiment",
        "data.source": "data/",
        "data.hash": "h123",
        "encoder.id": "enc",
        "encoder.revision": "rev1",
    }
    assert (params["seed"], params["cv.folds"], params["adapters"], params["metric"]) == (
        "13",
        "2",
        "linear",
        "macro_recall",
    )
    assert params["code_version"] == version
    assert params["data.rows_in"] == "12" and json.loads(params["data.rows_out"]) == {"train": 8, "eval": 4}
    assert params["data.eval_source"] == "validation" and "data.class_balance" in params
    assert params["warmup.task"] == "emotion" and params["warmup.rows"] == "40"
    assert run.data.tags["warmup.skipped"] == "x" * 500
    assert params["best.candidate"] == high.name and params["best.adapter"] == "linear"
    assert params["best.hp.C"] == "1.0" and params["fit.epochs"] == "4"
    assert params["serving"] == "int8"
    metrics = run.data.metrics
    assert metrics["cv_macro_recall_mean"] == pytest.approx(0.85)
    assert metrics["macro_recall"] == 0.75 and metrics["recall_a"] == 0.5 and metrics["f1_a"] == 0.6
    assert metrics["int8_score_drop"] == 0.01 and metrics["int8_agreement"] == 0.99
    assert run.data.tags["gate.decision"] == "promoted" and run.data.tags["model_version"] == "7"
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"data_summary.json", "quantization.json", "evaluation"} <= artifacts
    assert [a.path for a in client.list_artifacts(tracker.run_id, "evaluation")] == ["evaluation/report.json"]

    # the splits are the run's inputs (metadata and label counts, not the tweets)
    inputs = {}
    for inp in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in inp.tags}
        inputs[tags["mlflow.data.context"]] = (inp.dataset, tags)
    assert set(inputs) == {"training", "evaluation"}
    train, train_tags = inputs["training"]
    assert train.name == "sentiment-train" and train.source_type == "local"
    assert json.loads(train.profile)["num_rows"] == 4
    assert json.loads(train_tags["label_counts"]) == {"a": 2, "b": 2} and train_tags["data.hash"] == "h123"
    assert "t0" not in train.source + train.profile + train.schema
    assert inputs["evaluation"][0].name == "sentiment-eval"

    assert [row["candidate"] for row in table] == [low.name, high.name]
    assert table[1]["macro_recall_mean"] == pytest.approx(0.85) and table[1]["folds"] == 2
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{tracker.run_id}'")
    assert sorted(c.info.run_name for c in children) == sorted([low.name, high.name])
    assert all(c.data.metrics["cv_macro_f1_std"] >= 0 for c in children)


def test_dataset_sources():
    assert isinstance(dataset_source("cardiffnlp/tweet_eval:sentiment"), HuggingFaceDatasetSource)
    hub = dataset_source("cardiffnlp/tweet_eval:sentiment").to_dict()
    assert (hub["path"], hub["config_name"]) == ("cardiffnlp/tweet_eval", "sentiment")
    assert dataset_source("https://example.com/tweets.csv").to_dict() == {
        "url": "https://example.com/tweets.csv"
    }
